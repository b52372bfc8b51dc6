"""Errors the CLI reports as one line: OperationalError -> exit 1, UsageError -> exit 2."""


class MerpatiError(Exception):
    """Base of the errors whose message is meant for the operator, one line, no traceback."""


class OperationalError(MerpatiError):
    """Something the operator asked for cannot be done (exit 1)."""


class UsageError(MerpatiError):
    """Bad command-line usage or configuration (exit 2)."""
