"""
How long the delivery client waits for each reply, by protocol phase.

One timeout for every reply let a next hop that accepts TCP and never
greets, or answers a byte a second, hold a connection for the longest
wait of any phase. Postfix's smtp client waits per phase: the greeting
and EHLO (smtp_helo_timeout, 300 s), MAIL (smtp_mail_timeout, 300 s),
each RCPT (smtp_rcpt_timeout, 300 s), the reply to DATA
(smtp_data_init_timeout, 120 s), the reply to the end of the body
(smtp_data_done_timeout, 600 s: the next hop may scan the message), and
QUIT and others (smtp_quit_timeout, 300 s); a body the next hop stops
taking while it is streamed (smtp_data_xfer_timeout, 180 s). The connect timeout is the
send connector's connection_timeout (30 s by default).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PhaseTimeouts:
    greeting: float = 300.0
    helo: float = 300.0
    mail: float = 300.0
    rcpt: float = 300.0
    data_init: float = 120.0
    data_done: float = 600.0
    other: float = 300.0
    # A body being streamed that the peer stops taking (smtp_data_xfer_timeout, 180 s).
    data_xfer: float = 180.0

    @classmethod
    def uniform(cls, seconds: float) -> PhaseTimeouts:
        """The same wait in every phase (the hand-off to a hub: one reply timeout)."""
        return cls(seconds, seconds, seconds, seconds, seconds, seconds, seconds, seconds)

    def for_command(self, line: str) -> float:
        """The wait for the reply to a command line."""
        verb = line[:4].upper()
        if verb == "MAIL":
            return self.mail
        if verb == "RCPT":
            return self.rcpt
        if verb == "DATA":
            return self.data_init
        if verb == "BDAT":
            return self.data_done
        if verb in ("EHLO", "HELO", "STAR", "AUTH"):
            return self.helo
        return self.other
