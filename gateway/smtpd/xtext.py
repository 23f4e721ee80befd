"""RFC 3461 xtext, the encoding of XFORWARD attribute values."""

from __future__ import annotations

import re

_HEX = re.compile(r"\+([0-9A-Fa-f]{2})")


def encode(value: str) -> str:
    out = []
    for byte in value.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def decode(value: str) -> str:
    if "+" in value and not re.fullmatch(r"(?:[^+]|\+[0-9A-Fa-f]{2})*", value):
        raise ValueError(f"bad xtext {value!r}")
    return _HEX.sub(lambda m: chr(int(m.group(1), 16)), value).encode("latin-1").decode("utf-8", "replace")
