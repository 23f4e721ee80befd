"""The PROXY protocol parser: every field of v1 and v2, and every malformed form."""

import struct

import pytest

from gateway.smtpd.proxyproto import V2_SIGNATURE, ProxyHeader, ProxyHeaderError, parse, v1_header, v2_header


def test_v1_tcp4_and_tcp6_with_the_rest_kept():
    header, rest = parse(b"PROXY TCP4 192.0.2.10 10.0.0.1 51000 25\r\nEHLO x\r\n")
    assert header == ProxyHeader(1, False, ("192.0.2.10", 51000), ("10.0.0.1", 25)) and rest == b"EHLO x\r\n"
    header, _ = parse(v1_header(("2001:db8::5", 40000), ("2001:db8::1", 587)))
    assert header.source == ("2001:db8::5", 40000) and header.destination == ("2001:db8::1", 587)


def test_v1_unknown_is_local():
    assert parse(b"PROXY UNKNOWN\r\n") == (ProxyHeader(1, True), b"")
    assert parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nX") == (ProxyHeader(1, True), b"X")


def test_v2_inet_inet6_local_and_tlvs():
    header, rest = parse(v2_header(("198.51.100.7", 1234), ("10.0.0.1", 25), tlv=b"\x04\x00\x01\x00") + b"EHLO")
    assert header == ProxyHeader(2, False, ("198.51.100.7", 1234), ("10.0.0.1", 25)) and rest == b"EHLO"
    header, _ = parse(v2_header(("2001:db8::7", 1), ("2001:db8::1", 465)))
    assert header.source == ("2001:db8::7", 1)
    assert parse(v2_header(None, None)) == (ProxyHeader(2, True), b"")
    unspec = V2_SIGNATURE + bytes([0x21, 0x00, 0, 0])
    assert parse(unspec) == (ProxyHeader(2, True), b"")


@pytest.mark.parametrize("cut", range(1, 40))
def test_incomplete_headers_wait_for_more(cut):
    for full in (b"PROXY TCP4 192.0.2.10 10.0.0.1 51000 25\r\n", v2_header(("198.51.100.7", 1234), ("10.0.0.1", 25))):
        if cut < len(full):
            assert parse(full[:cut]) == (None, full[:cut])


@pytest.mark.parametrize(
    "data, message",
    [
        (b"EHLO client\r\n", "no PROXY protocol header (the connection began b'EHLO client\\r\\n')"),
        (b"PROXY TCP4 192.0.2.10 10.0.0.1 51000\r\n", "v1 header needs 6 fields, got 5"),
        (b"PROXY UDP4 192.0.2.10 10.0.0.1 1 2\r\n", "v1 family b'UDP4' is not TCP4, TCP6 or UNKNOWN"),
        (b"PROXY TCP4 192.0.2.300 10.0.0.1 1 2\r\n", "v1 address b'192.0.2.300' is not an IP address"),
        (b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n", "v1 address b'2001:db8::1' is not TCP4"),
        (b"PROXY TCP4 192.0.2.1 10.0.0.1 65536 2\r\n", "bad port b'65536'"),
        (b"PROXY TCP4 192.0.2.1 10.0.0.1 01 2\r\n", "bad port b'01'"),
        (b"PROXY TCP4 192.0.2.1 10.0.0.1 1 2\n", "v1 header without CRLF within 107 bytes"),
        (b"PROXY TCP4 " + b"1" * 120, "v1 header without CRLF within 107 bytes"),
        (V2_SIGNATURE + bytes([0x11, 0x11, 0, 12]) + bytes(12), "v2 version 1 is not 2"),
        (V2_SIGNATURE + bytes([0x22, 0x11, 0, 12]) + bytes(12), "v2 command 2 is neither LOCAL (0) nor PROXY (1)"),
        (V2_SIGNATURE + bytes([0x21, 0x12, 0, 12]) + bytes(12), "v2 transport 2 is not STREAM (1)"),
        (V2_SIGNATURE + bytes([0x21, 0x11, 0, 8]) + bytes(8), "v2 INET addresses need 12 bytes, got 8"),
        (V2_SIGNATURE + bytes([0x21, 0x21, 0, 12]) + bytes(12), "v2 INET6 addresses need 36 bytes, got 12"),
        (V2_SIGNATURE + bytes([0x21, 0x31]) + struct.pack("!H", 216) + bytes(216), "v2 family 3 (UNIX sockets) is not a TCP client"),
    ],
)
def test_malformed_headers_say_why(data, message):
    with pytest.raises(ProxyHeaderError) as e:
        parse(data)
    assert str(e.value).startswith(message)
