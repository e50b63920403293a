"""The errors every dataset module raises (the bottom of the package: imports nothing of it)."""

from __future__ import annotations

from harness.core.errors import UserError


class DatasetError(UserError, RuntimeError):
    """A dataset cannot be used as asked; the message names the file/split and says why.

    ``reason`` is the why; ``hint`` (optional) what to do about it. The message users see is
    ``reason + sep + hint``; one-line summaries (``vlbench list datasets``) show ``reason``.

    >>> e = DatasetError("x.json not found", "point at a copy")
    >>> str(e), e.reason, e.hint
    ('x.json not found; point at a copy', 'x.json not found', 'point at a copy')
    """

    def __init__(self, reason: str, hint: str = "", sep: str = "; "):
        super().__init__(f"{reason}{sep}{hint}" if hint else reason)
        self.reason, self.hint, self.sep = reason, hint, sep

    def __reduce__(self):  # keep the parts through pickling (e.g. from a data-loader worker)
        return type(self), (self.reason, self.hint, self.sep)


class DatasetNotFound(DatasetError):
    """A dataset file or folder is in none of the places looked at (``reason`` names them)."""
