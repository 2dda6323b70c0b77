"""Connector error hierarchy.

The pipeline retries ``TransientError`` with back-off, reports ``AuthError`` and
``ProtocolError`` as permanent for the account or folder named in the message,
and carries on with the other accounts.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """A source could not be read; the message names the source, account and folder."""


class TransientError(ConnectorError):
    """A fault that may go away on retry (connection drop, timeout, throttling)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthError(ConnectorError):
    """The server refused the credentials; retrying will not help."""


class ProtocolError(ConnectorError):
    """The server answered something the connector cannot use."""
