"""
HAProxy's PROXY protocol, versions 1 (text) and 2 (binary), as a pure parser.

A load balancer in TCP mode hides the client: every connection comes from
the balancer. With PROXY protocol the balancer opens each connection with a
header naming the real client, and that address is then the client for
everything (connector selection, rights, limits, logs, Received headers).
The header is trusted only from the connector's `trusted_proxies`.

`parse(buffer)` returns `(header, rest)` once a whole header is buffered,
`(None, buffer)` while it is incomplete, and raises ProxyHeaderError for
anything malformed. A v2 LOCAL command (the balancer's own health check) and
v1 `UNKNOWN` carry no client: the connection's own addresses stand.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107  # "PROXY TCP6 <39> <39> 65535 65535\r\n"


class ProxyHeaderError(ValueError):
    """A header that is not a valid PROXY protocol header; the message says why."""


@dataclass(frozen=True)
class ProxyHeader:
    version: int
    local: bool  # True: v2 LOCAL or v1 UNKNOWN, no client address given
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None


def _port(text: bytes) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[:1] == b"0") or int(text) > 65535:
        raise ProxyHeaderError(f"bad port {text!r}")
    return int(text)


def _v1(buffer: bytes) -> tuple[ProxyHeader | None, bytes]:
    end = buffer.find(b"\r\n")
    if end < 0:
        if len(buffer) >= V1_MAX or b"\n" in buffer:
            raise ProxyHeaderError("v1 header without CRLF within 107 bytes")
        return None, buffer
    if end + 2 > V1_MAX:
        raise ProxyHeaderError("v1 header longer than 107 bytes")
    line, rest = buffer[:end], buffer[end + 2 :]
    parts = line.split(b" ")
    if parts[:2] == [b"PROXY", b"UNKNOWN"]:
        return ProxyHeader(1, True), rest
    if len(parts) != 6:
        raise ProxyHeaderError(f"v1 header needs 6 fields, got {len(parts)}: {line[:60]!r}")
    _, family, src, dst, sport, dport = parts
    if family not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError(f"v1 family {family!r} is not TCP4, TCP6 or UNKNOWN")
    want = 4 if family == b"TCP4" else 6
    addresses = []
    for raw in (src, dst):
        try:
            # No IPv6 scope ("fe80::1%eth0"): ipaddress takes any text after the %,
            # commas, quotes and CRs included, and it would reach logs and headers.
            if b"%" in raw:
                raise ValueError("scoped address")
            address = ipaddress.ip_address(raw.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise ProxyHeaderError(f"v1 address {raw!r} is not an IP address") from None
        if address.version != want:
            raise ProxyHeaderError(f"v1 address {raw!r} is not {family.decode()}")
        addresses.append(str(address))
    return ProxyHeader(1, False, (addresses[0], _port(sport)), (addresses[1], _port(dport))), rest


def _v2(buffer: bytes) -> tuple[ProxyHeader | None, bytes]:
    if len(buffer) < 16:
        return None, buffer
    ver_cmd, fam, length = buffer[12], buffer[13], struct.unpack("!H", buffer[14:16])[0]
    if ver_cmd >> 4 != 2:
        raise ProxyHeaderError(f"v2 version {ver_cmd >> 4} is not 2")
    command = ver_cmd & 0x0F
    if command not in (0, 1):
        raise ProxyHeaderError(f"v2 command {command} is neither LOCAL (0) nor PROXY (1)")
    if len(buffer) < 16 + length:
        return None, buffer
    body, rest = buffer[16 : 16 + length], buffer[16 + length :]
    if command == 0:
        return ProxyHeader(2, True), rest
    family, transport = fam >> 4, fam & 0x0F
    if family == 0:
        return ProxyHeader(2, True), rest
    if transport != 1:
        raise ProxyHeaderError(f"v2 transport {transport} is not STREAM (1)")
    if family == 1:
        if length < 12:
            raise ProxyHeaderError(f"v2 INET addresses need 12 bytes, got {length}")
        src, dst = str(ipaddress.IPv4Address(body[0:4])), str(ipaddress.IPv4Address(body[4:8]))
        sport, dport = struct.unpack("!HH", body[8:12])
    elif family == 2:
        if length < 36:
            raise ProxyHeaderError(f"v2 INET6 addresses need 36 bytes, got {length}")
        src, dst = str(ipaddress.IPv6Address(body[0:16])), str(ipaddress.IPv6Address(body[16:32]))
        sport, dport = struct.unpack("!HH", body[32:36])
    else:
        raise ProxyHeaderError(f"v2 family {family} (UNIX sockets) is not a TCP client")
    return ProxyHeader(2, False, (src, sport), (dst, dport)), rest


def parse(buffer: bytes) -> tuple[ProxyHeader | None, bytes]:
    if buffer[:12] == V2_SIGNATURE[: len(buffer[:12])]:
        return _v2(buffer) if len(buffer) >= 12 else (None, buffer)
    if buffer[:6] == b"PROXY "[: len(buffer[:6])]:
        return _v1(buffer) if len(buffer) >= 6 else (None, buffer)
    raise ProxyHeaderError(f"no PROXY protocol header (the connection began {buffer[:16]!r})")


def v1_header(src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """For tests and tools: the v1 header a balancer would send."""
    family = "TCP6" if ":" in src[0] else "TCP4"
    return f"PROXY {family} {src[0]} {dst[0]} {src[1]} {dst[1]}\r\n".encode()


def v2_header(src: tuple[str, int] | None, dst: tuple[str, int] | None, tlv: bytes = b"") -> bytes:
    """For tests and tools: a v2 PROXY (or, without addresses, LOCAL) header."""
    if src is None or dst is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", len(tlv)) + tlv
    v6 = ":" in src[0]
    cls = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
    body = cls(src[0]).packed + cls(dst[0]).packed + struct.pack("!HH", src[1], dst[1]) + tlv
    return V2_SIGNATURE + bytes([0x21, 0x21 if v6 else 0x11]) + struct.pack("!H", len(body)) + body
