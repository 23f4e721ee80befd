"""[[send_connectors]]: outbound routes, their smart hosts, TLS, AUTH and OAuth."""

from __future__ import annotations

from pathlib import Path

from gateway.config.hop import check_hop_security, read_hop_security
from gateway.config.reader import Reader
from gateway.config.schema import OAUTH_MECHANISMS
from gateway.config.schema import SEND_CONNECTOR as T
from gateway.config.settings import ReceiveConnector, SendConnector
from gateway.config.values import host_port_parser


def read_send_connectors(reader: Reader, raw: dict, fqdn: str, receive_connectors: list[ReceiveConnector]) -> list[SendConnector]:
    """Every [[send_connectors]] table; `fqdn` is the default EHLO name, `receive_connectors` what source_receive_connectors may name."""
    send_connectors: list[SendConnector] = []
    known = {n.lower() for c in receive_connectors for n in (c.name, c.identity)}
    for i, data in enumerate(reader.array_of_tables(raw, "send_connectors")):
        where = f"send_connectors[{i}]"
        reader.table(data, where, T.names)
        connector = _read_send_connector(reader, data, where, fqdn, [c.name for c in send_connectors])
        for j, name in enumerate(connector.source_receive_connectors):
            if name.lower() not in known:
                reader.problem(f"{where}.source_receive_connectors[{j}]", f"no receive connector is called {name!r}")
        send_connectors.append(connector)
    return send_connectors


def _read_send_connector(reader: Reader, data: dict, where: str, fqdn: str, taken: list[str]) -> SendConnector:
    name = T.value(reader, data, where, "name")
    if not name:
        reader.problem(f"{where}.name", "every send connector needs a name")
    elif name in taken:
        reader.problem(f"{where}.name", f"{name!r} is already the name of another send connector")
    port = T.value(reader, data, where, "port")
    spaces = T.value(reader, data, where, "address_spaces")
    hosts = T.value(reader, data, where, "smart_hosts", parse=host_port_parser(port))
    if not spaces:
        reader.problem(f"{where}.address_spaces", "required: e.g. [\"*\"] or [\"partner.example\", \"*.partner.example\"]")
    if data.get("smart_hosts") == []:
        reader.problem(f"{where}.smart_hosts", "an empty list: leave smart_hosts out for DNS MX routing, or name one or more host[:port]")
    security = read_hop_security(reader, data, where, T, reader.relative)

    def path_or_none(key: str) -> Path | None:
        value = T.value(reader, data, where, key)
        return reader.relative(value) if value else None

    connector = SendConnector(
        name=name, address_spaces=spaces, smart_hosts=hosts, port=port, **security.fields(),
        **T.values(reader, data, where, ("cost", "enabled")),
        fqdn=T.value(reader, data, where, "fqdn", fqdn),
        **T.values(reader, data, where, ("connection_timeout", "tls_client_certificate_name", "oauth_token_url", "oauth_client_id",
                                          "oauth_scope")),
        oauth_client_secret_file=path_or_none("oauth_client_secret_file"),
        oauth_client_certificate_name=T.value(reader, data, where, "oauth_client_certificate_name"),
        oauth_service_account_file=path_or_none("oauth_service_account_file"),
        oauth_ca_file=path_or_none("oauth_ca_file"),
        **T.values(reader, data, where, ("source_senders", "source_receive_connectors", "source_users", "max_message_size",
                                          "max_connections", "max_messages_per_connection", "protocol_logging_level")),
    )
    _check_oauth(reader, where, connector, data)
    check_hop_security(reader, where, security, routes_by_mx=connector.dns_routing)
    if connector.tls_client_certificate_name and connector.tls == "none":
        reader.problem(f"{where}.tls", "tls_client_certificate_name is presented in a TLS session: tls = \"opportunistic\" or \"required\"")
    return connector


def _check_oauth(reader: Reader, where: str, connector: SendConnector, data: dict) -> None:
    """XOAUTH2 / OAUTHBEARER: a mailbox, TLS, and exactly one credential with what its grant needs."""
    oauth_keys = sorted(k for k in data if k.startswith("oauth_"))
    if connector.smart_host_auth not in OAUTH_MECHANISMS:
        if oauth_keys:
            reader.problem(f"{where}.{oauth_keys[0]}", 'oauth_* settings need smart_host_auth = "XOAUTH2" or "OAUTHBEARER"')
        return
    if not connector.auth_user:
        reader.problem(f"{where}.auth_user", "XOAUTH2 and OAUTHBEARER log in as a mailbox: auth_user = \"relay@corp.example\"")
    if connector.auth_password:
        reader.problem(f"{where}.auth_password", "not used with OAuth: the credential is oauth_client_secret_file, "
                       "oauth_client_certificate_name or oauth_service_account_file")
    if connector.tls == "none":
        reader.problem(f"{where}.tls", "a bearer token is never sent in clear: tls = \"opportunistic\" or \"required\"")
    credentials = [k for k in ("oauth_client_secret_file", "oauth_client_certificate_name", "oauth_service_account_file") if k in data]
    if len(credentials) != 1:
        reader.problem(f"{where}.smart_host_auth", f"{connector.smart_host_auth} needs exactly one of oauth_client_secret_file, "
                       "oauth_client_certificate_name (Microsoft 365) or oauth_service_account_file (Google)"
                       + (f"; given: {', '.join(credentials)}" if credentials else ""))
    if "oauth_service_account_file" in credentials:
        return  # The token URL and client come from the key file; the scope defaults to Gmail's.
    for key in ("oauth_token_url", "oauth_client_id", "oauth_scope"):
        if key not in data:
            reader.problem(f"{where}.{key}", "required with oauth_client_secret_file or oauth_client_certificate_name")
