"""One test per attack: a hostile peer on loopback (or over StringTransport) speaking the exact bytes."""
