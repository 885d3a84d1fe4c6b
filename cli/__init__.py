"""The `clinical-dp` command: the top floor, above everything it drives.

cli/main.py builds the parser and maps errors to exit statuses; each command lives in a
module of its own (cli/run.py, cli/spec.py, ...). Nothing below this package imports it.
"""

EXIT_OK, EXIT_INVALID, EXIT_FAILED = 0, 2, 1
