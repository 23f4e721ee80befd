"""
Exchange's permission groups and the extended rights each grants.

A receive connector lists permission groups; a client on that connector is a
principal (anonymous, or an externally secured gateway node), and gets the
rights its group grants if the connector lists that group. The names are
Exchange's, so `Add-ADPermission -ExtendedRights ...` habits carry over.
"""

from __future__ import annotations

from enum import Enum
from functools import lru_cache


class Right(str, Enum):
    SUBMIT = "ms-Exch-SMTP-Submit"
    ACCEPT_ANY_RECIPIENT = "ms-Exch-SMTP-Accept-Any-Recipient"
    ACCEPT_ANY_SENDER = "ms-Exch-SMTP-Accept-Any-Sender"
    ACCEPT_AUTHORITATIVE_DOMAIN_SENDER = "ms-Exch-SMTP-Accept-Authoritative-Domain-Sender"
    ACCEPT_ROUTING_HEADERS = "ms-Exch-Accept-Headers-Routing"
    # The header firewall (gateway/headerfirewall.py): who may set X-MS-Exchange-Organization-* / -Forest-*.
    ACCEPT_ORGANIZATION_HEADERS = "ms-Exch-Accept-Headers-Organization"
    ACCEPT_FOREST_HEADERS = "ms-Exch-Accept-Headers-Forest"
    BYPASS_ANTI_SPAM = "ms-Exch-Bypass-Anti-Spam"
    BYPASS_MESSAGE_SIZE_LIMIT = "ms-Exch-Bypass-Message-Size-Limit"
    ACCEPT_EXCH50 = "ms-Exch-SMTP-Accept-Exch50"
    ACCEPT_AUTHENTICATION_FLAG = "ms-Exch-SMTP-Accept-Authentication-Flag"
    SEND_AS = "ms-Exch-SMTP-Send-As"
    # exgateway's own: may tell the hub who the original client was (Postfix XFORWARD).
    ACCEPT_XFORWARD = "exgw-SMTP-Accept-XForward"


class PermissionGroup(str, Enum):
    ANONYMOUS_USERS = "AnonymousUsers"
    EXCHANGE_USERS = "ExchangeUsers"
    EXCHANGE_SERVERS = "ExchangeServers"
    PARTNERS = "Partners"


GROUP_RIGHTS: dict[PermissionGroup, frozenset[Right]] = {
    PermissionGroup.ANONYMOUS_USERS: frozenset({
        Right.SUBMIT,
        Right.ACCEPT_ANY_SENDER,
        Right.ACCEPT_AUTHORITATIVE_DOMAIN_SENDER,
        Right.ACCEPT_ROUTING_HEADERS,
    }),
    PermissionGroup.EXCHANGE_USERS: frozenset({
        Right.SUBMIT,
        Right.ACCEPT_ANY_RECIPIENT,
        Right.BYPASS_ANTI_SPAM,
        Right.ACCEPT_ROUTING_HEADERS,
    }),
    PermissionGroup.EXCHANGE_SERVERS: frozenset(Right),
    PermissionGroup.PARTNERS: frozenset({
        Right.SUBMIT,
        Right.ACCEPT_ANY_SENDER,
        Right.ACCEPT_AUTHORITATIVE_DOMAIN_SENDER,
        Right.ACCEPT_ROUTING_HEADERS,
    }),
}


class Principal(str, Enum):
    """Who the client is, as far as rights go."""

    ANONYMOUS = "Anonymous"
    # Exchange's ExternalAuthoritative mechanism: the connector's remote
    # ranges are the proof, and clients there count as gateway nodes.
    EXTERNALLY_SECURED = "ExternallySecured"
    # A client that passed AUTH.
    AUTHENTICATED = "Authenticated"
    # Another gateway node that proved the node secret (ExchangeServer
    # authentication, gateway/auth/node.py); Exchange's "Hub Transport Servers".
    GATEWAY_NODE = "GatewayNode"


PRINCIPAL_GROUPS: dict[Principal, tuple[PermissionGroup, ...]] = {
    Principal.ANONYMOUS: (PermissionGroup.ANONYMOUS_USERS,),
    Principal.EXTERNALLY_SECURED: (PermissionGroup.EXCHANGE_SERVERS, PermissionGroup.PARTNERS),
    Principal.AUTHENTICATED: (PermissionGroup.EXCHANGE_USERS,),
    Principal.GATEWAY_NODE: (PermissionGroup.EXCHANGE_SERVERS,),
}


# The names Exchange gives these principals in Add-ADPermission -User, and short aliases.
PRINCIPAL_NAMES: dict[str, Principal] = {
    "nt authority\\anonymous logon": Principal.ANONYMOUS,
    "anonymous": Principal.ANONYMOUS,
    "ms exchange\\externally secured servers": Principal.EXTERNALLY_SECURED,
    "externallysecured": Principal.EXTERNALLY_SECURED,
    "nt authority\\authenticated users": Principal.AUTHENTICATED,
    "authenticated": Principal.AUTHENTICATED,
    "ms exchange\\hub transport servers": Principal.GATEWAY_NODE,
    "gatewaynode": Principal.GATEWAY_NODE,
}


def parse_principal(name: str) -> Principal:
    try:
        return PRINCIPAL_NAMES[name.strip().lower()]
    except KeyError:
        raise ValueError(
            f"{name!r} is not a principal this gateway knows (use 'NT AUTHORITY\\ANONYMOUS LOGON', "
            "'NT AUTHORITY\\Authenticated Users' or 'MS Exchange\\Externally Secured Servers')"
        ) from None


def parse_right(name: str) -> Right:
    for right in Right:
        if right.value.lower() == name.strip().lower():
            return right
    raise ValueError(f"{name!r} is not an extended right (known: {', '.join(r.value for r in Right)})")


def rights_for(
    principal: Principal,
    connector_groups: frozenset[PermissionGroup],
    granted: frozenset[tuple[Principal, Right]] = frozenset(),
    withheld: frozenset[tuple[Principal, Right]] = frozenset(),
) -> frozenset[Right]:
    """
    The rights a principal holds on a connector: what its permission groups
    grant, plus rights granted to it on this connector (Add-ADPermission),
    minus rights withheld from it there (which win over any grant).
    """
    rights: set[Right] = set()
    for group in PRINCIPAL_GROUPS[principal]:
        if group in connector_groups:
            rights |= GROUP_RIGHTS[group]
    rights |= {right for who, right in granted if who is principal}
    rights -= {right for who, right in withheld if who is principal}
    if principal is not Principal.GATEWAY_NODE:
        # XFORWARD tells the hub who the client was; only a node that proved
        # the node secret may say so, whatever groups or grants would allow.
        rights.discard(Right.ACCEPT_XFORWARD)
    return frozenset(rights)


@lru_cache(maxsize=256)
def connector_rights(connector, principal: Principal) -> frozenset[Right]:
    """rights_for on a receive connector; the same for every session there, so computed once."""
    return rights_for(principal, connector.permission_groups, connector.granted, connector.withheld)
