"""Local simulators of the remote APIs, for ``watcher demo`` and for the tests.

Each simulator is a real aiohttp server on loopback that speaks one API's dialect: its paths, its
JSON shapes, its authentication and its error formats. What each run does is a script of
:data:`~watcher.simulators.base.Step` values, consumed one per status request.

They import nothing of watcher's but each other, so what drives watcher through them drives
it from outside, as a remote system would.
"""
