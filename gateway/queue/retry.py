"""
When to try a message again, when to give up, and when to warn the sender:
pure functions of the envelope and the time, as Exchange schedules them.

- After a failed attempt, the first `transient_attempts` retries come
  `transient_interval` apart (Exchange's TransientFailureRetryAttempts and
  TransientFailureRetryInterval); later ones every `retry_interval`
  (MessageRetryInterval).
- A message still pending `expiration` after it was received expires
  (MessageExpirationTimeout, 2 days): its pending recipients fail with
  status 4.4.7 and the sender gets a non-delivery report.
- Once it has waited `delay_notice` (DelayNotificationTimeout, 4 hours) with
  recipients still pending, the sender gets one delay notice; None turns
  delay notices off.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    retry_interval: float = 900.0
    transient_attempts: int = 6
    transient_interval: float = 60.0
    expiration: float = 2 * 86400.0
    delay_notice: float | None = 4 * 3600.0

    def next_attempt(self, attempts_made: int, now: float) -> float:
        """When to try again after `attempts_made` attempts (the first delivery attempt counts)."""
        if attempts_made <= self.transient_attempts:
            return now + self.transient_interval
        return now + self.retry_interval

    def expired(self, received_at: float, now: float) -> bool:
        return now - received_at >= self.expiration

    def delay_notice_due(self, received_at: float, now: float, already_sent: bool) -> bool:
        return self.delay_notice is not None and not already_sent and now - received_at >= self.delay_notice


def expiry_reply(last_reply: str | None) -> str:
    """What an expired recipient's status says: 4.4.7, with the last error the next hop gave."""
    last = f"; last error: {last_reply}" if last_reply else ""
    return f"550 4.4.7 Message expired: it could not be delivered in time{last}"
