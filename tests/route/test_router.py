"""Routing: accepted domains to mailbox delivery, others to the most specific send connector."""

import pytest

from gateway import testing
from gateway.address import parse_mailbox
from gateway.config import ConfigError
from gateway.domains import AcceptedDomains
from gateway.nexthop import MAILBOX, HopKind, NextHop
from gateway.route.router import Router

CFG = testing.config(send_connectors=[
    {"name": "Internet", "address_spaces": ["*"], "smart_hosts": ["relay.isp.example"], "cost": 5},
    {"name": "Internet backup", "address_spaces": ["*"], "smart_hosts": ["192.0.2.25:2525"], "cost": 10},
    {"name": "Partner", "address_spaces": ["*.partner.example"], "smart_hosts": ["mx.partner.example:26"]},
    {"name": "Partner HQ", "address_spaces": ["hq.partner.example"], "smart_hosts": ["hq.partner.example"], "cost": 50},
    {"name": "Old", "address_spaces": ["old.example"], "smart_hosts": ["old.example"], "enabled": False},
])
ROUTER = Router(AcceptedDomains(CFG.accepted_domains), CFG.send_connectors)


@pytest.mark.parametrize("address, hop", [
    ("alice@corp.example", MAILBOX),
    ("bob@anywhere.example", "Internet"),  # "*" twice: the lower cost wins
    ("c@partner.example", "Partner"),
    ("c@eu.partner.example", "Partner"),
    ("c@hq.partner.example", "Partner HQ"),  # exact beats wildcard, whatever the cost
    ("d@old.example", "Internet"),  # a disabled connector routes nothing
])
def test_most_specific_address_space_then_cost(address, hop):
    got = ROUTER.route(parse_mailbox(address))
    assert (got if got == MAILBOX else got.name) == hop


def test_smart_hosts_parsed_with_default_port():
    internet, backup, partner = CFG.send_connectors[:3]
    assert [str(h) for h in internet.smart_hosts + backup.smart_hosts + partner.smart_hosts] == [
        "relay.isp.example:25", "192.0.2.25:2525", "mx.partner.example:26"
    ]


def test_no_send_connector_no_route():
    assert Router(AcceptedDomains(CFG.accepted_domains)).route(parse_mailbox("x@elsewhere.example")) is None


def test_send_connector_errors_are_named():
    with pytest.raises(ConfigError) as e:
        testing.config(send_connectors=[{"name": "X", "address_spaces": ["bad..space"], "smart_hosts": []}, {"name": "X", "address_spaces": ["*"], "smart_hosts": ["h.example"], "colour": 1}])
    assert [f"{p.key}: {p.reason}" for p in e.value.problems] == [
        "send_connectors[0].address_spaces[0]: 'bad..space' is not *, a domain or a *.domain address space",
        'send_connectors[0].address_spaces: required: e.g. ["*"] or ["partner.example", "*.partner.example"]',
        "send_connectors[0].smart_hosts: an empty list: leave smart_hosts out for DNS MX routing, or name one or more host[:port]",
        ("send_connectors[1].colour: unknown key (known: address_spaces, auth_password, auth_user, connection_timeout, cost, enabled, fqdn, "
        "max_connections, max_message_size, max_messages_per_connection, name, oauth_ca_file, oauth_client_certificate_name, oauth_client_id, "
        "oauth_client_secret_file, oauth_scope, oauth_service_account_file, oauth_token_url, port, protocol_logging_level, smart_host_auth, "
        "smart_hosts, source_receive_connectors, source_senders, source_users, tls, tls_ca_file, tls_client_certificate_name, tls_domain)"),
        "send_connectors[1].name: 'X' is already the name of another send connector",
    ]


def test_a_send_connector_without_smart_hosts_routes_by_mx():
    cfg = testing.config(send_connectors=[{"name": "Internet", "address_spaces": ["*"], "port": 2525, "fqdn": "out.corp.example"}])
    (internet,) = cfg.send_connectors
    assert internet.dns_routing and (internet.port, internet.fqdn) == (2525, "out.corp.example")
    assert Router(AcceptedDomains(cfg.accepted_domains), cfg.send_connectors).route(parse_mailbox("x@outside.example")) == NextHop.via(internet)
    assert NextHop.via(internet).kind is HopKind.DNS_MX


def test_send_connector_tls_and_auth_settings_are_checked():
    with pytest.raises(ConfigError) as e:
        testing.config(send_connectors=[
            {"name": "A", "address_spaces": ["*"], "auth_user": "relay", "auth_password": "pw"},
            {"name": "B", "address_spaces": ["b.example"], "smart_hosts": ["relay.isp.example"], "auth_user": "relay", "tls": "none"},
            {"name": "C", "address_spaces": ["c.example"], "smart_hosts": ["relay.isp.example"], "tls_domain": "relay.isp.example"},
        ])
    assert [f"{p.key}: {p.reason}" for p in e.value.problems] == [
        "send_connectors[0].smart_host_auth: AUTH is for smart hosts; this connector routes by MX",
        "send_connectors[1].auth_user: smart_host_auth needs auth_user and auth_password",
        ('send_connectors[1].tls: BasicAuthRequireTLS needs TLS: tls = "opportunistic" or "required" '
         '(or smart_host_auth = "BasicAuth" to send credentials in clear)'),
        'send_connectors[2].tls: tls_domain and tls_ca_file check certificates, which only tls = "required" does',
    ]
    ok = testing.config(send_connectors=[{"name": "S", "address_spaces": ["*"], "smart_hosts": ["relay.isp.example:587"],
                                          "tls": "required", "auth_user": "relay", "auth_password": "pw"}])
    (s,) = ok.send_connectors
    assert (s.tls, s.smart_host_auth, s.max_connections, s.max_messages_per_connection) == ("required", "BasicAuthRequireTLS", 20, 20)
    assert "pw" not in repr(s)


def test_a_client_certificate_needs_tls_and_a_name_that_parses():
    """tls_client_certificate_name uses the receive connectors' name parsing; it is shown inside TLS only."""
    with pytest.raises(ConfigError) as e:
        testing.config(send_connectors=[
            {"name": "A", "address_spaces": ["*"], "smart_hosts": ["h.example"], "tls": "none",
             "tls_client_certificate_name": "<I>CN=Corp CA<S>CN=relay.corp.example"},
            {"name": "B", "address_spaces": ["b.example"], "smart_hosts": ["h.example"], "tls_client_certificate_name": "CN=relay"},
        ])
    got = [f"{p.key}: {p.reason}" for p in e.value.problems]
    assert got[0] == 'send_connectors[0].tls: tls_client_certificate_name is presented in a TLS session: tls = "opportunistic" or "required"'
    assert got[1].startswith("send_connectors[1].tls_client_certificate_name: ") and len(got) == 2
    (ok,) = testing.config(send_connectors=[{"name": "M", "address_spaces": ["*"], "smart_hosts": ["smtp.office365.com:587"],
                                             "tls_client_certificate_name": "0123456789abcdef0123456789ABCDEF01234567"}]).send_connectors
    assert ok.tls_client_certificate_name == "0123456789abcdef0123456789ABCDEF01234567"


def test_oauth_settings_are_checked():
    """XOAUTH2 needs a mailbox, TLS, one credential and what its grant needs; oauth_* keys without it are an error."""
    with pytest.raises(ConfigError) as e:
        testing.config(send_connectors=[
            {"name": "A", "address_spaces": ["*"], "smart_hosts": ["smtp.office365.com:587"], "smart_host_auth": "XOAUTH2", "tls": "none",
             "oauth_token_url": "http://login.example/token", "auth_password": "pw"},
            {"name": "B", "address_spaces": ["b.example"], "smart_hosts": ["h.example"], "smart_host_auth": "OAUTHBEARER",
             "auth_user": "relay@corp.example", "oauth_client_secret_file": "secret", "oauth_service_account_file": "sa.json"},
            {"name": "C", "address_spaces": ["c.example"], "smart_hosts": ["h.example"], "oauth_client_id": "abc"},
        ])
    assert [f"{p.key}: {p.reason}" for p in e.value.problems] == [
        "send_connectors[0].oauth_token_url: 'http://login.example/token' is not an https:// URL (a token is never fetched in clear)",
        'send_connectors[0].auth_user: XOAUTH2 and OAUTHBEARER log in as a mailbox: auth_user = "relay@corp.example"',
        ("send_connectors[0].auth_password: not used with OAuth: the credential is oauth_client_secret_file, oauth_client_certificate_name "
         "or oauth_service_account_file"),
        'send_connectors[0].tls: a bearer token is never sent in clear: tls = "opportunistic" or "required"',
        ("send_connectors[0].smart_host_auth: XOAUTH2 needs exactly one of oauth_client_secret_file, oauth_client_certificate_name "
         "(Microsoft 365) or oauth_service_account_file (Google)"),
        "send_connectors[0].oauth_client_id: required with oauth_client_secret_file or oauth_client_certificate_name",
        "send_connectors[0].oauth_scope: required with oauth_client_secret_file or oauth_client_certificate_name",
        ("send_connectors[1].smart_host_auth: OAUTHBEARER needs exactly one of oauth_client_secret_file, oauth_client_certificate_name "
         "(Microsoft 365) or oauth_service_account_file (Google); given: oauth_client_secret_file, oauth_service_account_file"),
        'send_connectors[2].oauth_client_id: oauth_* settings need smart_host_auth = "XOAUTH2" or "OAUTHBEARER"',
    ]
    (m365, google) = testing.config(send_connectors=[
        {"name": "Microsoft 365", "address_spaces": ["*"], "smart_hosts": ["smtp.office365.com:587"], "smart_host_auth": "XOAUTH2",
         "auth_user": "relay@corp.example", "oauth_token_url": "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
         "oauth_client_id": "app", "oauth_scope": "https://outlook.office365.com/.default", "oauth_client_secret_file": "/etc/exgateway/m365.secret"},
        {"name": "Google", "address_spaces": ["g.example"], "smart_hosts": ["smtp.gmail.com:587"], "smart_host_auth": "XOAUTH2",
         "auth_user": "scanner@g.example", "oauth_service_account_file": "sa.json"},
    ]).send_connectors
    assert (m365.smart_host_auth, str(m365.oauth_client_secret_file), m365.tls) == ("XOAUTH2", "/etc/exgateway/m365.secret", "opportunistic")
    assert google.oauth_service_account_file.name == "sa.json" and google.oauth_token_url == ""


def test_a_queued_address_routes_as_parsed_and_is_remembered_within_bounds(monkeypatch):
    import gateway.route.router as router_module

    router = Router(AcceptedDomains(CFG.accepted_domains), CFG.send_connectors)
    assert router.route_address("alice@corp.example") == MAILBOX
    assert router.route_address("c@hq.partner.example").name == "Partner HQ"
    assert router.route_address("not an address") is None
    # Remembered: asked again, the answer does not route again.
    monkeypatch.setattr(router, "route", lambda recipient, source=None: pytest.fail("routed twice"))
    assert router.route_address("alice@corp.example") == MAILBOX
    # Bounded: past the limit the memory starts over.
    monkeypatch.setattr(router_module, "ROUTES_REMEMBERED", 3)
    monkeypatch.setattr(router, "route", lambda recipient, source=None: "again")
    assert router.route_address("new@corp.example") == "again"
    assert len(router._by_address) == 1


# --- accepted domain types (Exchange's Authoritative, InternalRelay, ExternalRelay) ---

TYPED_DOMAINS = [
    {"domain": "corp.example"},
    {"domain": "shared.example", "type": "InternalRelay"},
    {"domain": "partner.example", "type": "ExternalRelay"},
]
FOR_EACH_DOMAIN = [
    {"name": "Corp", "address_spaces": ["corp.example"], "smart_hosts": ["corp-old.example"]},
    {"name": "Shared", "address_spaces": ["shared.example"], "smart_hosts": ["legacy.example"]},
    {"name": "Partner", "address_spaces": ["partner.example"], "smart_hosts": ["mx.partner.example"]},
]


def _router(send_connectors, recipient_exists=None) -> Router:
    cfg = testing.config(accepted_domains=TYPED_DOMAINS, send_connectors=send_connectors)
    return Router(AcceptedDomains(cfg.accepted_domains), cfg.send_connectors, recipient_exists)


def _where(router: Router, address: str):
    hop = router.route(parse_mailbox(address))
    return hop if hop in (MAILBOX, None) else hop.name


KNOWN = {"alice@corp.example", "bob@shared.example", "carol@partner.example"}


@pytest.mark.parametrize("connectors, lookup, expected", [
    # A send connector for every domain.
    (FOR_EACH_DOMAIN, None, {"alice@corp.example": MAILBOX, "zed@corp.example": MAILBOX,
                             "bob@shared.example": "Shared", "zed@shared.example": "Shared",
                             "carol@partner.example": "Partner", "zed@partner.example": "Partner"}),
    (FOR_EACH_DOMAIN, KNOWN, {"alice@corp.example": MAILBOX, "zed@corp.example": MAILBOX,
                              "bob@shared.example": MAILBOX, "zed@shared.example": "Shared",
                              "carol@partner.example": "Partner", "zed@partner.example": "Partner"}),
    # No send connector at all.
    ([], None, {"alice@corp.example": MAILBOX, "zed@corp.example": MAILBOX,
                "bob@shared.example": MAILBOX, "zed@shared.example": MAILBOX,
                "carol@partner.example": None, "zed@partner.example": None}),
    ([], KNOWN, {"alice@corp.example": MAILBOX, "zed@corp.example": MAILBOX,
                 "bob@shared.example": MAILBOX, "zed@shared.example": None,
                 "carol@partner.example": None, "zed@partner.example": None}),
    # Only a "*" connector: without recipient validation it does not take an
    # InternalRelay domain (nobody is known locally, and all of it would go to the Internet)...
    ([{"name": "Internet", "address_spaces": ["*"], "smart_hosts": ["relay.isp.example"]}], None,
     {"alice@corp.example": MAILBOX, "bob@shared.example": MAILBOX, "zed@shared.example": MAILBOX,
      "carol@partner.example": "Internet"}),
    # ...with it, the recipients validation does not know go there, as in Exchange; ExternalRelay always does.
    ([{"name": "Internet", "address_spaces": ["*"], "smart_hosts": ["relay.isp.example"]}], KNOWN,
     {"alice@corp.example": MAILBOX, "zed@corp.example": MAILBOX,
      "bob@shared.example": MAILBOX, "zed@shared.example": "Internet",
      "carol@partner.example": "Internet", "zed@partner.example": "Internet"}),
])
def test_each_domain_type_routes_as_exchange_does(connectors, lookup, expected):
    """
    Authoritative: the mailbox store whoever the recipient is and whatever
    send connector lists the domain. InternalRelay: known recipients to the
    mailbox store, the rest out through the matching send connector (no
    route if none; with no recipient validation nobody is known, and the
    mailbox store takes the domain only when no connector matches).
    ExternalRelay: a send connector or no route, never the mailbox store.
    """
    exists = None if lookup is None else (lambda address: address in lookup)
    router = _router(connectors, exists)
    assert {a: _where(router, a) for a in expected} == expected


def test_decision_names_the_domain_type_and_reason():
    router = _router(FOR_EACH_DOMAIN, lambda address: None)
    decision = router.decide(parse_mailbox("x@shared.example"))
    assert (decision.route_name, decision.domain_type, decision.why) == (
        'send connector "Shared"', "InternalRelay",
        "shared.example is an InternalRelay accepted domain; no recipient validation, so nobody is known locally",
    )
    assert router.decide(parse_mailbox("x@elsewhere.example")).route_name == "(no route)"


def test_internal_relay_answer_is_asked_again_when_validation_changes():
    """A mailbox created after the message was queued takes the recipient on the next attempt."""
    known: set[str] = set()
    router = _router(FOR_EACH_DOMAIN, lambda address: address in known)
    assert router.route_address("new@shared.example").name == "Shared"
    known.add("new@shared.example")
    assert router.route_address("new@shared.example") == MAILBOX
    # Other domains' answers do not depend on it and are still remembered.
    assert router.route_address("x@partner.example").name == "Partner"
    assert "x@partner.example" in router._by_address and "new@shared.example" not in router._by_address
