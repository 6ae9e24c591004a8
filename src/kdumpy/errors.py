"""Errors every layer raises; the CLI turns them into one-line messages."""


class KdumpyError(Exception):
    """An error with a message fit for the user (printed as one line, exit non-zero)."""

    exit_code = 1


class DumpFormatError(KdumpyError):
    """A dump file is corrupt, truncated or of an unknown format."""


class PageNotPresent(KdumpyError):
    """A page is not in the dump (excluded by filtering, or outside RAM)."""
