"""
TLS and AUTH to a next hop: one reader for a send connector's smart hosts
and for the mailbox next hop ([mailbox] delivery = "smtp").

Both hold the same keys with the same meaning (schema.HOP_SECURITY); they
differ only in where a relative tls_ca_file lives, in the mailbox's extra
auth_password_file (the secret kept out of the config file) and in the
send connector's OAuth mechanisms, whose checks are its own
(gateway/config/send.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config.reader import Reader
from gateway.config.schema import OAUTH_MECHANISMS, Table


@dataclass(frozen=True)
class HopSecurity:
    """The TLS and AUTH settings of one next hop, as MailboxConfig and SendConnector hold them."""

    tls: str
    tls_domain: str
    tls_ca_file: Path | None
    smart_host_auth: str
    auth_user: str
    auth_password: str = field(repr=False)

    def fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def read_hop_security(reader: Reader, data: dict, where: str, table: Table, resolve: Callable[[str], Path],
                      password_file_base: Path | None = None) -> HopSecurity:
    """
    The keys of schema.HOP_SECURITY from `data`; tls_ca_file made a path by
    `resolve`. With password_file_base, auth_password_file is read too: the
    password is its first line (the file relative to that directory).
    """
    auth_user = table.value(reader, data, where, "auth_user")
    password = table.value(reader, data, where, "auth_password")
    if password_file_base is not None:
        password_file = table.value(reader, data, where, "auth_password_file")
        if password_file:
            if password:
                reader.problem(f"{where}.auth_password_file", "give auth_password or auth_password_file, not both")
            try:
                password = (password_file_base / password_file).read_text(encoding="utf-8").splitlines()[0]
            except (OSError, UnicodeDecodeError, IndexError) as e:
                reader.problem(f"{where}.auth_password_file",
                               f"cannot read a password from {password_file_base / password_file}: {e or 'empty file'}")
    ca_file = table.value(reader, data, where, "tls_ca_file")
    return HopSecurity(
        tls=table.value(reader, data, where, "tls"),
        tls_domain=table.value(reader, data, where, "tls_domain"),
        tls_ca_file=resolve(ca_file) if ca_file else None,
        smart_host_auth=table.value(reader, data, where, "smart_host_auth", "BasicAuthRequireTLS" if auth_user else "None"),
        auth_user=auth_user,
        auth_password=password,
    )


def check_hop_security(reader: Reader, where: str, hop: HopSecurity, routes_by_mx: bool = False, password_file: bool = False) -> None:
    """
    What the settings need of each other: AUTH a user and password (OAuth's
    credential is checked by the send connector), BasicAuthRequireTLS TLS,
    certificate checks tls = "required"; AUTH is for smart hosts, not MX.
    """
    if hop.smart_host_auth != "None":
        if routes_by_mx:
            reader.problem(f"{where}.smart_host_auth", "AUTH is for smart hosts; this connector routes by MX")
        if hop.smart_host_auth in OAUTH_MECHANISMS:
            pass
        elif not hop.auth_user or not hop.auth_password:
            reader.problem(f"{where}.auth_user", "smart_host_auth needs auth_user and auth_password" + (" (or auth_password_file)" if password_file else ""))
        if hop.smart_host_auth == "BasicAuthRequireTLS" and hop.tls == "none":
            reader.problem(f"{where}.tls", "BasicAuthRequireTLS needs TLS: tls = \"opportunistic\" or \"required\" (or smart_host_auth = \"BasicAuth\" to send credentials in clear)")
    if (hop.tls_domain or hop.tls_ca_file) and hop.tls != "required":
        reader.problem(f"{where}.tls", "tls_domain and tls_ca_file check certificates, which only tls = \"required\" does")
