"""
Which ESMTP parameters a next hop may be sent: only those of extensions it
advertised in its last EHLO reply.

A strict next hop answers 555 (or 501) to a MAIL or RCPT parameter of an
extension it did not offer (RFC 5321 4.1.1.11, RFC 1870 6), and that reply
is permanent: sending SIZE= to a server that has no SIZE, or after a HELO
fallback (which offers nothing), fails the message for good. So every
parameter on an outbound MAIL or RCPT is chosen here, from the extensions
the client recorded, in one place.
"""

from __future__ import annotations

from gateway import dsnparams


def mail_parameters(
    extensions: dict[str, str], size: int | None, body: str | None = None, ret: str = "", envid: str = "",
    smtputf8: bool = False,
) -> list[str]:
    """
    The parameters for `MAIL FROM:<...>`, each guarded by its extension.

    `extensions` is what the next hop advertised (empty after a HELO
    fallback); `body` is the BODY= value the message arrived with, if any.
    """
    params = []
    if "SIZE" in extensions and size is not None:
        params.append(f"SIZE={size}")
    if body == "8BITMIME" and "8BITMIME" in extensions:
        params.append("BODY=8BITMIME")
    if smtputf8 and "SMTPUTF8" in extensions:
        params.append("SMTPUTF8")
    if "DSN" in extensions:
        params += dsnparams.mail_parameters(ret, envid)
    return params


def lacks_smtputf8(extensions: dict[str, str], smtputf8: bool) -> bool:
    """A message that needs SMTPUTF8 and a next hop without it: the message cannot go there (RFC 6531 3.2)."""
    return smtputf8 and "SMTPUTF8" not in extensions


def rcpt_parameters(extensions: dict[str, str], notify: str = "", orcpt: str = "") -> list[str]:
    """NOTIFY and ORCPT (RFC 3461) for `RCPT TO:<...>`, only to a next hop that offers DSN."""
    if "DSN" not in extensions:
        return []
    return dsnparams.rcpt_parameters(notify, orcpt)


def rcpt_command(recipient: str, params: list[str]) -> str:
    return " ".join([f"RCPT TO:<{recipient}>", *params])


def mail_command(sender: str, params: list[str]) -> str:
    return " ".join([f"MAIL FROM:<{sender}>", *params])
