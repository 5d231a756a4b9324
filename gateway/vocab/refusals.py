"""Refusals: how the domain (the ServerManager) says no, in words a caller can read.

The HTTP layer chooses the status (``gateway.errors``): ``Refused`` 400, ``AlreadyExists`` 409, ``Busy``
429 with ``Retry-After``. Domain code raises these, never an HTTP error.
"""

from __future__ import annotations


class Refused(Exception):
    """The request cannot be carried out as asked (a bad name, a limit reached, a server already running)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class AlreadyExists(Refused):
    """What the request would create exists already."""


class Busy(Refused):
    """Not now: try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
