"""Recipient -> next hop: mailbox delivery for accepted domains, send connectors later."""
