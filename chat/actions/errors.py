"""The one error type of actions: a request the user can fix."""

from __future__ import annotations


class ActionError(Exception):
    """A request the user can fix; `code` and the message go to the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
