"""DKIM signing at the hub: the key store (keys.py) and the signer (dkim.py)."""
