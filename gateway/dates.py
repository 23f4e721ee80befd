"""RFC 5322 dates for banners and headers, always in UTC with a numeric zone."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

_last: list = [None, ""]


def rfc5322(seconds: float) -> str:
    """The date to the second; formatted once per second, as every banner and Received header asks for it."""
    whole = int(seconds)
    if _last[0] != whole:
        _last[0], _last[1] = whole, format_datetime(datetime.fromtimestamp(whole, UTC))
    return _last[1]
