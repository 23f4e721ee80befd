"""
Exchange's certificate identifiers: a thumbprint, or a TlsCertificateName.

`Set-ReceiveConnector -TlsCertificateName "<I>issuer<S>subject"` names a
certificate by its issuer and subject distinguished names. Exchange answers a
malformed one with "isn't a valid Certificate Identifier" and no hint why;
here every malformed form says what is wrong and where.

Distinguished names are written as Exchange prints them (.NET's
X500DistinguishedName: `CN=mail.corp.example, OU=IT, O=Corp, S=WA, C=US`,
most specific first). They compare by their attributes, ignoring case,
spacing around separators and the spelling of attribute names (`S`/`ST`,
`E`/`EMAILADDRESS`), so a name copied from Get-ExchangeCertificate or from
`openssl x509 -subject` both match.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

# Attribute names as .NET, OpenSSL and RFC 4514 spell them, to one spelling each.
ATTRIBUTE_ALIASES = {
    "CN": "CN", "COMMONNAME": "CN",
    "O": "O", "ORGANIZATIONNAME": "O",
    "OU": "OU", "ORGANIZATIONALUNITNAME": "OU",
    "L": "L", "LOCALITYNAME": "L",
    "S": "ST", "ST": "ST", "STATEORPROVINCENAME": "ST",
    "C": "C", "COUNTRYNAME": "C",
    "E": "EMAILADDRESS", "EMAIL": "EMAILADDRESS", "EMAILADDRESS": "EMAILADDRESS",
    "DC": "DC", "DOMAINCOMPONENT": "DC",
    "STREET": "STREET", "SERIALNUMBER": "SERIALNUMBER", "T": "TITLE", "TITLE": "TITLE",
    "G": "GN", "GN": "GN", "GIVENNAME": "GN", "SN": "SN", "SURNAME": "SN", "UID": "UID",
    "POSTALCODE": "POSTALCODE",
}
_THUMBPRINT = re.compile(r"^[0-9A-Fa-f]{40}$")


_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)


class CertificateIdentifierError(ValueError):
    """A certificate identifier that cannot be read; the message says what is wrong."""


@dataclass(frozen=True)
class DistinguishedName:
    """A DN as a sorted tuple of (attribute, value) pairs, for order- and case-blind comparison."""

    attributes: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.attributes)


@dataclass(frozen=True)
class TlsCertificateName:
    issuer: DistinguishedName
    subject: DistinguishedName


def is_thumbprint(text: str) -> bool:
    return bool(_THUMBPRINT.match(text.replace(" ", "")))


def normalize_thumbprint(text: str) -> str:
    """Exchange prints thumbprints as 40 upper-case hex digits; admins paste them with spaces."""
    return text.replace(" ", "").upper()


def _split_unquoted(text: str, separators: str) -> list[str]:
    """Split on separators outside double quotes and not escaped with a backslash."""
    parts, current, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            quoted = not quoted
        elif ch in separators and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if quoted:
        raise CertificateIdentifierError("a double quote is not closed")
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return re.sub(r"\\(.)", r"\1", value)


def parse_dn(text: str, what: str = "distinguished name") -> DistinguishedName:
    """`CN=x, O=y, C=US` (commas or semicolons, any spacing) -> DistinguishedName."""
    return DistinguishedName(tuple(sorted((name, value.lower()) for name, value in parse_dn_pairs(text, what))))


def parse_dn_pairs(text: str, what: str = "distinguished name") -> list[tuple[str, str]]:
    """The DN's (attribute, value) pairs in written order, values as written."""
    if not text.strip():
        raise CertificateIdentifierError(f"the {what} is empty")
    try:
        parts = _split_unquoted(text, ",;+")
    except CertificateIdentifierError as e:
        raise CertificateIdentifierError(f"in the {what}: {e}") from None
    attributes = []
    for part in parts:
        if not part.strip():
            raise CertificateIdentifierError(f"the {what} {text!r} has an empty component (two commas in a row, or a trailing comma)")
        key, eq, value = part.partition("=")
        if not eq:
            raise CertificateIdentifierError(f"the {what} component {part.strip()!r} has no '=' (expected e.g. CN=mail.corp.example)")
        name = ATTRIBUTE_ALIASES.get(key.strip().upper())
        if name is None:
            known = ", ".join(sorted({k for k in ATTRIBUTE_ALIASES if len(k) <= 2}))
            raise CertificateIdentifierError(f"the {what} has an unknown attribute {key.strip()!r} (known: {known}, ...)")
        value = _unquote(value)
        if not value:
            raise CertificateIdentifierError(f"the {what} attribute {key.strip()}= has no value")
        attributes.append((name, value))
    return attributes


def parse_tls_certificate_name(text: str) -> TlsCertificateName:
    """
    `<I>issuer<S>subject`, exactly: `<I>` first, then `<S>`, each once, both
    non-empty. Raises CertificateIdentifierError saying what is wrong.
    """
    stripped = text.strip()
    if not stripped:
        raise CertificateIdentifierError("the certificate name is empty (expected <I>issuer<S>subject)")
    # ASCII case only: str.upper() changes the length of some text ("ß" -> "SS"),
    # and the positions found here cut the original.
    upper = stripped.translate(_ASCII_UPPER)
    if upper.count("<I>") > 1 or upper.count("<S>") > 1:
        raise CertificateIdentifierError("<I> and <S> may each appear only once")
    if not upper.startswith("<I>"):
        if "<I>" in upper:
            raise CertificateIdentifierError("the name must start with <I> (found text before <I>)")
        if "<S>" in upper:
            raise CertificateIdentifierError("the issuer part <I>... is missing (expected <I>issuer<S>subject)")
        raise CertificateIdentifierError(
            "expected <I>issuer<S>subject (e.g. <I>CN=Corp CA, DC=corp, DC=example<S>CN=mail.corp.example) or a 40-digit thumbprint"
        )
    s_at = upper.find("<S>")
    if s_at < 0:
        raise CertificateIdentifierError("the subject part <S>... is missing (expected <I>issuer<S>subject)")
    issuer = parse_dn(stripped[3:s_at], "issuer")
    subject = parse_dn(stripped[s_at + 3 :], "subject")
    return TlsCertificateName(issuer, subject)


def parse_certificate_identifier(text: str) -> str | TlsCertificateName:
    """A thumbprint (normalised) or a TlsCertificateName."""
    if is_thumbprint(text):
        return normalize_thumbprint(text)
    if not text.strip().startswith("<") and re.fullmatch(r"[0-9A-Fa-f ]+", text.strip()):
        digits = len(text.replace(" ", ""))
        raise CertificateIdentifierError(f"a thumbprint has 40 hex digits, this one has {digits}")
    return parse_tls_certificate_name(text)
