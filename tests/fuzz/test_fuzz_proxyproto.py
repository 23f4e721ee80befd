"""
Property-based: the PROXY protocol parser (v1 and v2) raises only
ProxyHeaderError, returns the header it was given whatever follows it, and
asks for more bytes (None) only while what it has could still become a header.
"""

import ipaddress

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.smtpd.proxyproto import V2_SIGNATURE, ProxyHeader, ProxyHeaderError, parse, v1_header, v2_header

ports = st.integers(min_value=0, max_value=65535)
v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).map(str)
endpoints4 = st.tuples(st.tuples(v4, ports), st.tuples(v4, ports))
endpoints6 = st.tuples(st.tuples(v6, ports), st.tuples(v6, ports))


@given(st.one_of(endpoints4, endpoints6), st.binary(max_size=40), st.booleans(), st.binary(max_size=20))
@example((("::ffff:1.2.3.4", 1), ("::1", 2)), b"EHLO x\r\n", True, b"")
def test_a_header_parses_to_its_addresses_and_leaves_what_follows(ends, rest, v2, tlv):
    src, dst = ends
    header = v2_header(src, dst, tlv) if v2 else v1_header(src, dst)
    parsed, left = parse(header + rest)
    assert parsed == ProxyHeader(2 if v2 else 1, False, (str(ipaddress.ip_address(src[0])), src[1]),
                                 (str(ipaddress.ip_address(dst[0])), dst[1]))
    assert left == rest


@given(st.one_of(endpoints4, endpoints6), st.booleans(), st.data())
def test_a_header_cut_short_asks_for_more(ends, v2, data):
    header = v2_header(*ends) if v2 else v1_header(*ends)
    cut = data.draw(st.integers(min_value=1, max_value=len(header) - 1))
    assert parse(header[:cut]) == (None, header[:cut])


@given(st.one_of(
    st.binary(max_size=120),
    st.builds(lambda b: b"PROXY " + b, st.binary(max_size=120)),
    st.builds(lambda b: V2_SIGNATURE + b, st.binary(max_size=80)),
    st.builds(lambda parts: b"PROXY " + b" ".join(parts) + b"\r\n",
              st.lists(st.sampled_from([b"TCP4", b"TCP6", b"UNKNOWN", b"1.2.3.4", b"::1", b"65535", b"65536", b"0", b"01",
                                        b"", b"fe80::1%eth0", b"1.2.3.04", b"\xff"]), max_size=7)),
))
@example(b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n")
@example(V2_SIGNATURE + b"\x21\x31\x00\x00")
def test_any_bytes_give_a_header_more_please_or_proxy_header_error(data):
    try:
        parsed, rest = parse(data)
    except ProxyHeaderError as e:
        assert str(e)
        return
    if parsed is None:
        assert rest == data and len(data) < 16 + 65535 + 1
        return
    assert len(rest) < len(data)
    if not parsed.local:
        for host, port in (parsed.source, parsed.destination):
            assert 0 <= port <= 65535
            address = ipaddress.ip_address(host)
            assert "%" not in host and str(address) == host
