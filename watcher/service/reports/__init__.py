"""The reports a CI system reads when ``run --once`` or ``wait`` ends, beside the lines on stdout.

* :mod:`~watcher.service.reports.cases`: each watch as a test case: its verdict (passed,
  failure, error, skipped), remote state, duration and detail, read from its record.
* :mod:`~watcher.service.reports.junit`: ``--junit FILE``, a JUnit XML file (GitLab's and
  Jenkins's test reports), written atomically; :func:`~watcher.service.reports.junit.check`
  says before the run whether it can be written.
* :mod:`~watcher.service.reports.github`: under GitHub Actions, an ``::error::`` (or
  ``::warning::``) line per run that did not succeed and a Markdown table for the job summary.
* :mod:`~watcher.service.reports.publish`: which of them a run writes, and writing them.

Every remote text in them (states, details) is masked (:func:`watcher.redact.scrub`) and
escaped for its format, so it can neither break the file nor forge a line, a cell or a command.

It may import the models, the shared modules and :mod:`watcher.schema`; :mod:`watcher.service.once`
and :mod:`watcher.cli` import it.
"""
