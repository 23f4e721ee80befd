"""
Envelope addresses, parsed strictly per RFC 5321 section 4.1.2.

The relay decision rests on the recipient's domain, so the domain must be the
one a next hop would route on. Parsing is strict about structure (quoted local
parts, address literals, source routes are recognised, not guessed at) and
records what a relay trick would lean on, so policy can refuse it:
`%` and `!` in a local part, and a quoted local part that holds `@`.
Source routes are parsed and dropped, as RFC 5321 says servers SHOULD do;
only the final mailbox is ever routed or passed on.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import idna

from gateway.errors import Reply, SMTPError

_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+$")
# RFC 6531 3.3: with SMTPUTF8, atext also takes any non-ASCII character (RFC 6532
# UTF8-non-ascii); C1 controls and the Unicode line separators stay out.
# Lone surrogates are no characters at all (strict UTF-8 never decodes to one).
_ATEXT_UTF8 = re.compile(r"^(?:[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]|[^\x00-\x9f\u2028\u2029\ud800-\udfff])+$")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_PARAM_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")

MAX_LOCAL = 64
MAX_DOMAIN = 255
MAX_PATH = 256


@dataclass(frozen=True)
class Address:
    """A mailbox (or the null reverse path): local part and lower-cased domain."""

    local: str
    domain: str
    quoted: bool = False
    literal: bool = False

    @property
    def null(self) -> bool:
        return not self.local and not self.domain

    @property
    def has_routing_characters(self) -> bool:
        """True if a next hop might read this local part as another route."""
        return "%" in self.local or "!" in self.local or (self.quoted and "@" in self.local)

    def __str__(self) -> str:
        if self.null:
            return ""
        local = self.local
        if self.quoted:
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{local}@{self.domain}"

    @property
    def path(self) -> str:
        """The address as an SMTP path, with angle brackets."""
        return f"<{self}>"


NULL = Address("", "")
# The bare <Postmaster> recipient, before policy names its domain.
POSTMASTER = Address("postmaster", "")


class AddressSyntaxError(SMTPError):
    pass


def _bad(reason: str, sender: bool) -> AddressSyntaxError:
    return AddressSyntaxError(Reply.BAD_SENDER if sender else Reply.BAD_ADDRESS, reason=reason)


def valid_domain(domain: str) -> bool:
    """RFC 5321 Domain: dot-separated LDH labels, no trailing dot."""
    if not domain or len(domain) > MAX_DOMAIN:
        return False
    return all(_LABEL.match(label) for label in domain.split("."))


def _valid_literal(text: str) -> bool:
    inner = text[1:-1]
    try:
        if inner.lower().startswith("ipv6:"):
            ipaddress.IPv6Address(inner[5:])
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        return False
    return True


def _split_bracketed(arg: str) -> tuple[str, str] | None:
    """Split `<path> params` honouring quotes and backslashes inside the path."""
    if '"' not in arg:
        # Nearly every path: no quoted local part, so the first ">" closes it.
        end = arg.find(">")
        return (arg[1:end], arg[end + 1 :]) if end > 0 else None
    quoted = False
    i = 1
    while i < len(arg):
        c = arg[i]
        if quoted and c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == ">" and not quoted:
            return arg[1:i], arg[i + 1 :]
        i += 1
    return None


def _qtext(c: str, utf8: bool) -> bool:
    return 32 <= ord(c) <= 126 or (utf8 and ord(c) >= 0xA0 and c not in "\u2028\u2029" and not 0xD800 <= ord(c) <= 0xDFFF)


def _parse_local(local: str, sender: bool, utf8: bool = False) -> tuple[str, bool]:
    atext = _ATEXT_UTF8 if utf8 else _ATEXT
    if local.startswith('"'):
        if len(local) < 2 or not local.endswith('"'):
            raise _bad("unterminated quoted local part", sender)
        out = []
        body = local[1:-1]
        i = 0
        while i < len(body):
            c = body[i]
            if c == "\\":
                if i + 1 >= len(body) or not _qtext(body[i + 1], utf8):
                    raise _bad("bad quoted pair", sender)
                out.append(body[i + 1])
                i += 2
                continue
            if c == '"' or not _qtext(c, utf8):
                raise _bad("bad character in quoted local part", sender)
            out.append(c)
            i += 1
        unquoted = "".join(out)
        if _is_dot_string(unquoted, atext):
            # RFC 5321 4.1.2: a quoted string that needs no quotes is the
            # same mailbox as its plain form: `"bob"@x` is bob@x, for
            # delivery, policy and logs alike.
            return unquoted, False
        return unquoted, True
    if not local or local.startswith(".") or local.endswith(".") or ".." in local:
        raise _bad("bad dot-string local part", sender)
    if not all(atext.match(atom) for atom in local.split(".")):
        raise _bad("bad character in local part", sender)
    return local, False


def _is_dot_string(local: str, atext=_ATEXT) -> bool:
    return bool(local) and all(atext.match(atom) for atom in local.split("."))


def _a_label_domain(domain: str, sender: bool) -> str:
    """An internationalised domain (U-labels, RFC 6531) as the A-label form that routing, DNS and policy use."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise _bad("bad internationalised domain", sender) from None


def parse_mailbox(text: str, *, sender: bool = False, utf8: bool = False) -> Address:
    """
    Parse `local@domain` (no brackets, no source route). With `utf8` (a
    SMTPUTF8 transaction) the local part may hold UTF-8 and the domain
    U-labels, which are turned into A-labels (xn--...).
    """
    # The last @ outside a quoted string separates local part and domain.
    at = -1
    quoted = False
    i = 0
    if '"' not in text:
        # Nothing quoted (nearly every address): the last @ is the one.
        at, i = text.rfind("@"), len(text)
    while i < len(text):
        c = text[i]
        if quoted and c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == "@" and not quoted:
            at = i
        i += 1
    if at <= 0 or quoted:
        raise _bad("no domain", sender)
    local_text, domain = text[:at], text[at + 1 :]
    local, was_quoted = _parse_local(local_text, sender, utf8)
    if len(local_text.encode("utf-8")) > MAX_LOCAL:
        raise _bad("local part too long", sender)
    if domain.startswith("["):
        if not domain.endswith("]") or not _valid_literal(domain):
            raise _bad("bad address literal", sender)
        return Address(local, domain.lower(), was_quoted, literal=True)
    if utf8 and not domain.isascii():
        domain = _a_label_domain(domain, sender)
    if not valid_domain(domain):
        raise _bad("bad domain", sender)
    return Address(local, domain.lower(), was_quoted)


def _strip_source_route(path: str, sender: bool) -> str:
    """Drop an A-d-l (`@a,@b:`) after checking that it is well formed."""
    if not path.startswith("@"):
        return path
    colon = path.find(":")
    if colon < 0:
        raise _bad("bad source route", sender)
    for hop in path[:colon].split(","):
        if not hop.startswith("@") or not valid_domain(hop[1:]):
            raise _bad("bad source route", sender)
    return path[colon + 1 :]


def parse_path(arg: str, *, sender: bool, utf8: bool = False) -> tuple[Address, dict[str, str | None]]:
    """
    Parse the argument after `MAIL FROM:` or `RCPT TO:` into an address and
    its ESMTP parameters (keys upper-cased).

    A non-ASCII address is taken only in a SMTPUTF8 transaction: `utf8` for
    a RCPT after such a MAIL, or a MAIL that carries the SMTPUTF8 parameter
    itself (RFC 6531 3.4); otherwise it stays a 501.

    Brackets are expected; a bare address without spaces is also taken, as
    many devices send `MAIL FROM: user@example` and refusing it helps nobody.
    """
    arg = arg.lstrip(" ")
    if arg.startswith("<"):
        split = _split_bracketed(arg)
        if split is None:
            raise _bad("unbalanced angle brackets", sender)
        path, rest = split
        if rest and not rest.startswith(" "):
            raise _bad("junk after path", sender)
    else:
        path, _, rest = arg.partition(" ")
        if not path or "<" in path or ">" in path:
            raise _bad("no path", sender)
    if len(path) > MAX_PATH:
        raise _bad("path too long", sender)
    params = parse_parameters(rest)
    if path == "":
        if not sender:
            raise _bad("null recipient", sender)
        return NULL, params
    if not sender and path.lower() == "postmaster":
        # RFC 5321 4.5.1: <Postmaster> without a domain must be accepted;
        # policy gives it the organisation's primary domain.
        return POSTMASTER, params
    utf8 = utf8 or (sender and "SMTPUTF8" in params)
    if not utf8 and not path.isascii():
        raise _bad("non-ASCII address without SMTPUTF8", sender)
    return parse_mailbox(_strip_source_route(path, sender), sender=sender, utf8=utf8), params


def take_smtputf8(params: dict[str, str | None]) -> bool:
    """Remove MAIL's SMTPUTF8 parameter (RFC 6531 3.4: a keyword without a value); True if it was there."""
    if "SMTPUTF8" not in params:
        return False
    if params.pop("SMTPUTF8") is not None:
        raise SMTPError(Reply.BAD_SYNTAX, reason="SMTPUTF8 takes no value")
    return True


def parse_parameters(text: str) -> dict[str, str | None]:
    """ESMTP `KEY[=VALUE]` parameters; a malformed one is a syntax error."""
    params: dict[str, str | None] = {}
    for token in text.split():
        key, eq, value = token.partition("=")
        if not _PARAM_KEY.match(key) or (eq and not value):
            raise SMTPError(Reply.BAD_SYNTAX, reason=f"bad parameter {token!r}")
        params[key.upper()] = value if eq else None
    return params
