"""Errors the crawler layer raises.

Each carries a short, stable `reason` (usable as a counter key in run reports, e.g. "HTTP 404",
"timeout") and a free-form `detail` for humans. Keeping the two apart lets the report group
failures without parsing messages.
"""
from __future__ import annotations


class _ReasonedError(Exception):
    def __init__(self, reason: str, detail: str = "", *, url: str = ""):
        self.reason = reason
        self.detail = detail
        self.url = url
        message = reason + (f": {detail}" if detail else "") + (f" ({url})" if url else "")
        super().__init__(message)


class FetchError(_ReasonedError):
    """An HTTP fetch did not give a usable answer (refused address, HTTP error, timeout, bad JSON)."""


class SourceError(_ReasonedError):
    """A crawl source is unreachable or answers something that is not what its contract promises."""


class AgentConfigError(ValueError):
    """A source's agent type or parameters are wrong; the message names the problem."""
