"""
Attack (found by tests/fuzz/test_fuzz_proxyproto.py): a PROXY v1 header
whose client address carries an IPv6 scope. Python's ipaddress accepts any
text after the `%` (commas, quotes, a bare CR), and the "client address"
went on to connector selection, the logs and the Received header. A PROXY
header names plain addresses only.
"""

import pytest

from gateway.smtpd.proxyproto import ProxyHeaderError, parse


@pytest.mark.parametrize("address", [b"fe80::1%eth0", b'fe80::1%a,"b', b"fe80::1%x\rReceived:forged"])
def test_a_scoped_address_in_a_v1_header_is_refused(address):
    with pytest.raises(ProxyHeaderError, match="is not an IP address"):
        parse(b"PROXY TCP6 " + address + b" ::1 40000 25\r\nEHLO x\r\n")


def test_plain_v6_addresses_still_parse():
    header, rest = parse(b"PROXY TCP6 2001:db8::7 ::1 40000 25\r\nEHLO x\r\n")
    assert header.source == ("2001:db8::7", 40000) and rest == b"EHLO x\r\n"
