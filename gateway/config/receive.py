"""
[[receive_connectors]]: who may connect where, with what rights and limits.

Besides each connector's own settings, what connectors must agree on
between them: unique names, one role per binding, one PROXY setting per
binding, and remote ranges that make the choice of connector unambiguous.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from gateway.config.reader import Reader
from gateway.config.schema import PERMISSION
from gateway.config.schema import RECEIVE_CONNECTOR as T
from gateway.config.settings import ReceiveConnector
from gateway.config.values import Binding, string
from gateway.connectors import ALL_IPV4, ALL_IPV6, IPRange, range_conflicts
from gateway.networks import DEFAULT_NETWORKS, resolve_ranges
from gateway.policy.rights import Principal, Right, parse_principal, parse_right
from gateway.tls.profiles import SAFE_MIN_VERSION, TLSProfile, default_min_version

DEFAULT_INACTIVITY = {"frontend": 300.0, "hub": 600.0}


def _names(first: str, last: str) -> tuple[str, ...]:
    """The schema's keys from `first` to `last`, in order."""
    names = [k.name for k in T.keys]
    return tuple(names[names.index(first):names.index(last) + 1])


_LIMITS = _names("banner", "trusted_proxies")
_BODY = _names("bare_linefeeds", T.keys[-1].name)


def read_receive_connectors(reader: Reader, raw: dict, server_name: str, fqdn: str,
                            networks: Mapping[str, tuple[IPRange, ...]] | None) -> list[ReceiveConnector]:
    """Every [[receive_connectors]] table, each name once, checked against each other."""
    connectors: list[ReceiveConnector] = []
    where_of: dict[str, str] = {}
    for i, c in enumerate(reader.array_of_tables(raw, "receive_connectors")):
        connector = _read_connector(reader, c, i, server_name, fqdn, networks)
        if connector.name in where_of:
            reader.problem(f"receive_connectors[{i}].name", f"{connector.name!r} is already the name of {where_of[connector.name]}")
            continue
        where_of[connector.name] = f'receive_connectors[{i}] ("{connector.name}")'
        connectors.append(connector)
    if not any(c.enabled for c in connectors):
        reader.problem("receive_connectors", "no enabled receive connector: the gateway would accept nothing")
    _check_bindings(reader, connectors, where_of)
    return connectors


def _read_connector(reader: Reader, data: dict, index: int, server_name: str, fqdn: str,
                    networks: Mapping[str, tuple[IPRange, ...]] | None = None) -> ReceiveConnector:
    name = data.get("name")
    where = f"receive_connectors[{index}]"
    if isinstance(name, str) and name:
        where = f'receive_connectors[{index}] ("{name}")'
    else:
        reader.problem(f"{where}.name", "every receive connector needs a name")
        name = f"#{index}"
    reader.table(data, where, T.names)
    if "role" not in data:
        reader.problem(f"{where}.role", "required: 'frontend' or 'hub'")
    role = T.value(reader, data, where, "role")
    bindings = T.value(reader, data, where, "bindings")
    if not bindings and "bindings" not in data:
        reader.problem(f"{where}.bindings", "required: a list of 'ip:port'")
    # Each entry is a range or the name of a [networks] list (gateway/networks.py).
    entries = T.value(reader, data, where, "remote_ip_ranges", (), lambda v: resolve_ranges(v, networks or DEFAULT_NETWORKS))
    ranges: tuple[IPRange, ...] = tuple(r for entry in entries for r in entry)
    if "remote_ip_ranges" not in data:
        ranges = (ALL_IPV4, ALL_IPV6)
    elif not ranges:
        reader.problem(f"{where}.remote_ip_ranges", "an empty list would serve no client")
    groups = T.value(reader, data, where, "permission_groups")
    mechanisms = T.value(reader, data, where, "auth_mechanisms")
    granted, withheld = _read_permissions(reader, data, where)
    limits = T.values(reader, data, where, _LIMITS, defaults={
        "fqdn": fqdn,
        "connection_inactivity_timeout": DEFAULT_INACTIVITY[role],
        # Exchange's hub connector takes every frontend's connections from few addresses.
        "max_inbound_connection_per_source": 20 if role == "frontend" else None,
    })
    connector = ReceiveConnector(
        granted=granted,
        withheld=withheld,
        name=name,
        server_name=server_name,
        role=role,
        bindings=bindings,
        remote_ip_ranges=ranges,
        permission_groups=frozenset(groups),
        auth_mechanisms=frozenset(mechanisms),
        **limits,
        **_read_tls_profile(reader, data, where, ranges),
        **T.values(reader, data, where, _BODY),
    )
    if "BasicAuthRequireTLS" in connector.auth_mechanisms and not connector.uses_tls:
        reader.problem(f"{where}.auth_mechanisms", "BasicAuthRequireTLS needs TLS: add \"Tls\" or set implicit_tls = true")
    if connector.require_tls and not connector.uses_tls:
        reader.problem(f"{where}.require_tls", "require_tls needs TLS offered: add \"Tls\" to auth_mechanisms or set implicit_tls = true")
    if connector.proxy_protocol and not connector.trusted_proxies:
        reader.problem(f"{where}.trusted_proxies", "proxy_protocol needs the balancers' addresses: a header from anyone else is a spoofed client address")
    if connector.basic_auth and "ExternalAuthoritative" in connector.auth_mechanisms:
        reader.problem(f"{where}.auth_mechanisms", "ExternalAuthoritative trusts every client in the remote ranges; it does not mix with BasicAuth")
    return connector


def _read_tls_profile(reader: Reader, data: dict, where: str, ranges: tuple[IPRange, ...]) -> dict[str, Any]:
    """
    tls_cipher_profile and tls_min_version. A weakened profile (legacy suites,
    TLS below 1.2) is for old devices at known addresses: refused on a
    connector whose remote_ip_ranges are left out or cover a whole address family.
    """
    profile = T.value(reader, data, where, "tls_cipher_profile")
    min_version = T.value(reader, data, where, "tls_min_version", default_min_version(profile))
    if profile == "modern" and min_version < SAFE_MIN_VERSION:
        reader.problem(f"{where}.tls_min_version", f"TLS {min_version} has none of the modern cipher suites: set tls_cipher_profile = \"legacy\" too")
    weakened = TLSProfile(profile, min_version).weakened
    if weakened and ("remote_ip_ranges" not in data or any(r.covers(ALL_IPV4) or r.covers(ALL_IPV6) for r in ranges)):
        key = "tls_cipher_profile" if profile == "legacy" else "tls_min_version"
        reader.problem(
            f"{where}.{key}",
            "weakened TLS (legacy suites or TLS below 1.2) is allowed only on a connector whose remote_ip_ranges list "
            "the old devices' addresses; this one is open to every address (0.0.0.0/0 or ::/0)",
        )
    return {"tls_cipher_profile": profile, "tls_min_version": min_version}


def _read_permissions(reader: Reader, data: dict, where: str) -> tuple[frozenset[tuple[Principal, Right]], frozenset[tuple[Principal, Right]]]:
    """`[[receive_connectors.permissions]]`: user, extended_rights, deny (default false)."""
    granted: set[tuple[Principal, Right]] = set()
    withheld: set[tuple[Principal, Right]] = set()
    entries = data.get("permissions", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        reader.problem(f"{where}.permissions", "must be an array of tables ([[receive_connectors.permissions]])")
        return frozenset(), frozenset()
    for i, entry in enumerate(entries):
        at = f"{where}.permissions[{i}]"
        reader.table(entry, at, PERMISSION.names)
        if "user" not in entry or "extended_rights" not in entry:
            reader.problem(at, "needs user and extended_rights")
            continue
        principal = PERMISSION.value(reader, entry, at, "user", None, lambda v: parse_principal(string(v)))
        rights = PERMISSION.value(reader, entry, at, "extended_rights", (), lambda v: parse_right(string(v)))
        deny = PERMISSION.value(reader, entry, at, "deny")
        if principal is not None:
            (withheld if deny else granted).update((principal, right) for right in rights)
    return frozenset(granted), frozenset(withheld)


def _check_bindings(reader: Reader, connectors: list[ReceiveConnector], where: dict[str, str]) -> None:
    by_binding: dict[Binding, list[ReceiveConnector]] = {}
    for c in connectors:
        if c.enabled:
            for b in c.bindings:
                by_binding.setdefault(b, []).append(c)
    for binding, group in by_binding.items():
        roles = {c.role for c in group}
        if len(roles) > 1:
            reader.problem(
                where[group[0].name] + ".bindings",
                f"{binding} is shared by frontend and hub connectors ({', '.join(repr(c.name) for c in group)}); a port serves one role",
            )
        proxy_settings = {(c.proxy_protocol, c.trusted_proxies) for c in group}
        if len(proxy_settings) > 1:
            reader.problem(
                where[group[-1].name] + ".proxy_protocol",
                f"the connectors on {binding} ({', '.join(repr(c.name) for c in group)}) must agree on proxy_protocol and "
                "trusted_proxies: the header is read before the connector is chosen",
            )
        for first, second, why in cast(list[tuple[ReceiveConnector, ReceiveConnector, str]], range_conflicts(group)):
            reader.problem(
                where[second.name] + ".remote_ip_ranges",
                f"connectors {first.name!r} and {second.name!r} both listen on {binding} and the choice between them is ambiguous: {why}",
            )
    wildcard = {"0.0.0.0", "::"}
    for b in by_binding:
        for other in by_binding:
            if b != other and b.port == other.port and b.host in wildcard and b.ipv6 == other.ipv6:
                names = sorted({c.name for c in by_binding[b] + by_binding[other]})
                reader.problem(
                    where[by_binding[other][0].name] + ".bindings",
                    f"{other} and {b} cannot both listen (the wildcard takes the whole port); connectors: {', '.join(names)}",
                )
