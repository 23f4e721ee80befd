"""The ESMTP server: wire bytes in, session events and replies out."""
