"""The command line: parsing, exit codes and what each command does."""
