"""Delivery out of the hub's queue: local Maildir store and the outbound SMTP client."""
