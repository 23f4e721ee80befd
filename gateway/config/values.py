"""
The value types of the configuration and the parsers that make them.

Each parser takes what TOML gave (any type) and returns the value, or raises
ValueError whose text is the reason an admin reads after `file: key:`. They
are pure: no file, clock, DNS or environment is read here, so the delivery
client, the CLI and the tests can use the types without loading a config.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.address import valid_domain
from gateway.connectors import IPRange, parse_range
from gateway.route.source import sender_pattern
from gateway.tls.certname import parse_certificate_identifier

MAX_WORKERS = 64


@dataclass(frozen=True)
class Binding:
    """Where a receive connector listens: an IP address and a port."""

    host: str
    port: int

    @property
    def ipv6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.ipv6 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class HostPort:
    """A next hop, hub or DNS server: a host name or IP address and a port."""

    host: str
    port: int
    # For an address found by DNS: the name it was found under (TLS checks the certificate against it).
    name: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$")
_SIZE = re.compile(r"^(\d+)\s*(B|KB|MB|GB)?$", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_UNITS = {None: 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def parse_duration(value: Any) -> float:
    """`30s`, `5m`, `2d`, or Exchange's timespan `00:05:00` / `2.00:00:00`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value.strip())
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
        m = _TIMESPAN.match(value.strip())
        if m:
            days, h, mins, s = (int(g or 0) for g in m.groups())
            if h < 24 and mins < 60 and s < 60:
                return float(days * 86400 + h * 3600 + mins * 60 + s)
    raise ValueError(f"{value!r} is not a duration (use e.g. '30s', '5m', '2d' or '00:05:00')")


def parse_size(value: Any) -> int:
    """Bytes, or `36MB` / `512KB` (binary units, as Exchange counts them)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        m = _SIZE.match(value.strip())
        if m and int(m.group(1)) > 0:
            return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper() if m.group(2) else None]
    raise ValueError(f"{value!r} is not a size (use bytes or e.g. '36MB')")


def parse_port(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
        return value
    if isinstance(value, str) and value.isdigit() and 0 < int(value) < 65536:
        return int(value)
    raise ValueError(f"{value!r} is not a valid port (1-65535)")


def split_host_port(text: str) -> tuple[str, str]:
    """`host:port` or `[ipv6]:port` into its two texts (the port unchecked)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r} is not [ipv6]:port")
        return host, port
    host, sep, port = text.rpartition(":")
    if not sep or ":" in host:
        raise ValueError(f"{text!r} is not host:port (write IPv6 as [addr]:port)")
    return host, port


def parse_binding(value: Any) -> Binding:
    """`0.0.0.0:25`, `127.0.0.1:2525`, `[::]:25`."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an 'ip:port' string")
    host, port = split_host_port(value)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{value!r}: {host!r} is not an IP address") from None
    try:
        return Binding(host, parse_port(port))
    except ValueError as e:
        raise ValueError(f"{value!r}: {e}") from None


def parse_host_port(value: Any, default_port: int = 25) -> HostPort:
    """`host`, `host:port`, `10.0.0.1:2525` or `[2001:db8::1]:2525`."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a host or host:port string")
    if value.startswith("[") or value.count(":") == 1:
        host, port = split_host_port(value)
        port_n = parse_port(port)
    else:
        host, port_n = value, default_port
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not valid_domain(host):
            raise ValueError(f"{value!r}: {host!r} is not a host name or IP address") from None
    return HostPort(host, port_n)


def host_port_parser(default_port: int) -> Callable[[Any], HostPort]:
    """parse_host_port with this port for a bare host (53 for DNS servers, 2525 for hubs)."""
    return lambda value: parse_host_port(value, default_port)


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def positive_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{value!r} is not a positive integer")
    return value


def memory_percent(value: Any) -> float:
    """`[health] max_memory_percent`: above 0, at most 100 (100: memory never refuses mail)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 100:
        raise ValueError(f"{value!r} is not a percentage above 0 and at most 100")
    return float(value)


def ipv6_prefix(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 128:
        raise ValueError(f"{value!r} is not a prefix length (1-128)")
    return value


def count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a whole number (0 or more)")
    return value


def workers_parser(cpus: Callable[[], int]) -> Callable[[Any], int]:
    """`server.workers`: a count, or "auto" for one per CPU (`cpus()`: how many this process may run on)."""

    def parse(value: Any) -> int:
        if value == "auto":
            return max(1, min(MAX_WORKERS, cpus()))
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_WORKERS:
            raise ValueError(f'{value!r} is not "auto" or a whole number from 1 to {MAX_WORKERS}')
        return value

    return parse


def positive_duration(value: Any) -> float:
    """A duration above zero (a timeout of 0 would fail every wait at once)."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{value!r} is not a duration above zero")
    return seconds


def duration_or_off(value: Any) -> float | None:
    if isinstance(value, str) and value.lower() == "off":
        return None
    return parse_duration(value)


def limit(value: Any) -> int | None:
    """A positive count, or "unlimited" (Exchange's word)."""
    if isinstance(value, str) and value.lower() == "unlimited":
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{value!r} is not a positive integer or \"unlimited\"")
    return value


def choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    """One of `options`, matched without regard to case, returned as spelt in `options`."""

    def parse(value: Any) -> str:
        for option in options:
            if isinstance(value, str) and value.lower() == option.lower():
                return option
        raise ValueError(f"{value!r} is not one of {', '.join(options)}")

    return parse


def ip_range(value: Any) -> IPRange:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IP range string")
    try:
        return parse_range(value)
    except ValueError as e:
        raise ValueError(f"{value!r} is not an IP address, CIDR block or a-b range ({e})") from None


def fqdn(value: Any) -> str:
    if not isinstance(value, str) or not valid_domain(value):
        raise ValueError(f"{value!r} is not a valid host name")
    return value


def banner(value: Any) -> str:
    value = string(value)
    if "\r" in value or "\n" in value:
        raise ValueError("a banner is one line")
    try:
        value.format(fqdn="", date="", connector="", server="")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"bad placeholder {e} (known: {{fqdn}}, {{date}}, {{connector}}, {{server}})") from None
    return value


def certificate_identifier(value: Any) -> str:
    value = string(value)
    parse_certificate_identifier(value)  # CertificateIdentifierError is a ValueError naming what is wrong
    return value


def sender(value: Any) -> str:
    """A send connector's source_senders entry (gateway/route/source.py)."""
    return sender_pattern(string(value))


def https_url(value: Any) -> str:
    value = string(value)
    scheme, sep, rest = value.partition("://")
    if scheme.lower() != "https" or not sep or not rest.split("/")[0]:
        raise ValueError(f"{value!r} is not an https:// URL (a token is never fetched in clear)")
    return value


def ldap_url(value: Any) -> str:
    value = string(value)
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("ldap", "ldaps") or not rest.strip("/"):
        raise ValueError(f"{value!r} is not an ldap://host[:port] or ldaps://host[:port] URL")
    host = rest.strip("/")
    try:
        parse_host_port(host, 389)
    except ValueError as e:
        raise ValueError(f"{value!r}: {e}") from None
    return value


def ldap_attribute(value: Any) -> str:
    value = string(value)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", value):
        raise ValueError(f"{value!r} is not an LDAP attribute name")
    return value


def address_space(value: Any) -> str:
    """`*`, `ext.example` or `*.partner.example`."""
    value = string(value).lower()
    if value == "*":
        return value
    bare = value.removeprefix("*.")
    if not valid_domain(bare):
        raise ValueError(f"{value!r} is not *, a domain or a *.domain address space")
    return value


def accepted_domain_name(value: Any) -> str:
    value = string(value).lower()
    bare = value.removeprefix("*.")
    if not valid_domain(bare):
        raise ValueError(f"{value!r} is not a domain or *.domain wildcard")
    return value
