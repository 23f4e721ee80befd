"""Logs in Exchange's formats: SMTP protocol logs (and, later, message tracking)."""
