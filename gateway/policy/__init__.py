"""Per-phase checks (connect, helo, mail, rcpt, data) and the rights they rest on."""
