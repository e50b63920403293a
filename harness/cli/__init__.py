"""The command line: argument parsing and exit codes (``main``), one function per command
(``commands``). The top layer: nothing imports it."""
