"""RFC 5322 dates for banners and headers, always in UTC with a numeric zone."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime


def rfc5322(seconds: float) -> str:
    return format_datetime(datetime.fromtimestamp(seconds, timezone.utc))
