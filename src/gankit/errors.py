"""User-facing errors: one short line that names the file, flag or value at fault."""


class GankitError(Exception):
    """An error caused by input (a flag, a file, a value), reported as one line by the CLI."""


class DataError(GankitError):
    """A dataset could not be found, read or parsed."""


class Interrupted(GankitError):
    """Training stopped at a step on Ctrl-C or SIGTERM, its checkpoint saved (every rank raises it; one says it)."""
