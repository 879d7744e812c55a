"""Exceptions raised for bad input: the library's ``DataFormatError`` and the command line's
``UserError``."""

from __future__ import annotations


class DataFormatError(ValueError):
    """A take's file is malformed or unreadable.

    ``path`` names the file, ``line`` is the 1-based JSONL line (None when the fault is not
    tied to a line) and ``reason`` the bare description without the location.
    """

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.reason = reason if reason is not None else message

    def __reduce__(self):  # keep path/line/reason when raised inside a DataLoader worker
        return (_rebuild, (self.args[0], self.path, self.line, self.reason))


def _rebuild(message, path, line, reason):
    return DataFormatError(message, path=path, line=line, reason=reason)


class UserError(Exception):
    """A command-line error the user can fix (a bad option, a missing file): ``koemorph-data``
    prints it as one line and exits with ``status`` (1 unless told). Raised by
    ``koemorph_data.commands`` only; library code raises ``DataFormatError`` / ``ValueError``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class StorageError(OSError):
    """A request to the store holding the takes failed (after its retries) or timed out;
    ``url`` names the object."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url

    def __reduce__(self):  # keep url when raised inside a DataLoader worker
        return (_rebuild_storage, (self.args[0], self.url))


def _rebuild_storage(message, url):
    return StorageError(message, url=url)
