"""`exgateway receive-connector test|list|show`: the seed's anonymous relay, explained."""

from gateway import testing
from gateway.admin.cli import main
from gateway.admin.explain import explain

SEED = {
    "receive_connectors": [
        {"name": "Default Frontend", "role": "frontend", "bindings": ["0.0.0.0:25"], "permission_groups": ["AnonymousUsers"]},
        {
            "name": "Anon Relay",
            "role": "frontend",
            "bindings": ["0.0.0.0:25"],
            "remote_ip_ranges": ["192.0.2.10", "198.51.100.0/24"],
            "permission_groups": ["AnonymousUsers"],
            "permissions": [{"user": "NT AUTHORITY\\ANONYMOUS LOGON", "extended_rights": ["ms-Exch-SMTP-Accept-Any-Recipient"]}],
        },
        {"name": "Retired", "role": "frontend", "bindings": ["0.0.0.0:25"], "remote_ip_ranges": ["203.0.113.0/24"], "enabled": False},
        {
            "name": "Default",
            "role": "hub",
            "bindings": ["127.0.0.1:2525"],
            "remote_ip_ranges": ["127.0.0.0/8"],
            "permission_groups": ["ExchangeServers"],
            "auth_mechanisms": ["ExternalAuthoritative"],
        },
    ]
}


def test_relay_ip_lands_on_the_relay_connector_and_may_relay():
    lines = explain(testing.config(**SEED), "192.0.2.10", 25, "printer@devices.example", ("someone@outside.example", "alice@corp.example"))
    assert lines == [
        "Connection from 192.0.2.10 to port 25:",
        "  binding 0.0.0.0:25:",
        "    EXSERVER\\Default Frontend  0.0.0.0-255.255.255.255 matches (4294967296 addresses); lost: a more specific range won",
        "    EXSERVER\\Anon Relay        192.0.2.10 matches (1 address) <- chosen",
        "    EXSERVER\\Retired           disabled",
        "Session on EXSERVER\\Anon Relay (frontend) as Anonymous:",
        ("  rights: ms-Exch-Accept-Headers-Routing, ms-Exch-SMTP-Accept-Any-Recipient, ms-Exch-SMTP-Accept-Any-Sender, "
         "ms-Exch-SMTP-Accept-Authoritative-Domain-Sender, ms-Exch-SMTP-Submit"),
        "  MAIL FROM:<printer@devices.example>  ->  250 2.1.0 Sender OK",
        # The frontend lets it through; the hub has no route outside the accepted domains yet.
        "  RCPT TO:<someone@outside.example>  ->  550 5.4.4 SMTP; Unable to route recipient, no route to the recipient's domain",
        ("      route: (no route)  domain type: not accepted  "
         "(outside.example is not an accepted domain and no send connector's address space matches it)"),
        "  RCPT TO:<alice@corp.example>  ->  250 2.1.5 Recipient OK",
        "      route: mailbox  domain type: Authoritative  (corp.example is an Authoritative accepted domain)",
    ]


def test_other_ip_lands_on_default_frontend_and_gets_550_5_7_54():
    lines = explain(testing.config(**SEED), "198.18.0.1", 25, "x@devices.example", ("someone@outside.example",))
    assert "    EXSERVER\\Anon Relay        no range matches (ranges: 192.0.2.10, 198.51.100.0/24)" in lines
    assert "Session on EXSERVER\\Default Frontend (frontend) as Anonymous:" in lines
    assert lines[-1] == "  RCPT TO:<someone@outside.example>  ->  550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"


def test_no_connector_on_port_or_for_client():
    cfg = testing.config(**SEED)
    assert explain(cfg, "192.0.2.1", 587) == ["Connection from 192.0.2.1 to port 587:", "  no receive connector listens on port 587"]
    lines = explain(cfg, "192.0.2.1", 2525)
    assert lines[-1] == "    no enabled connector serves 192.0.2.1: it gets `421 4.3.2 Service not available`"




def test_cli_list_and_show(tmp_path, capsys):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        '[server]\nname = "EXSERVER"\nfqdn = "mail.corp.example"\n[[accepted_domains]]\ndomain = "corp.example"\n'
        '[[receive_connectors]]\nname = "Default Frontend"\nrole = "frontend"\nbindings = ["0.0.0.0:25", "[::]:25"]\n'
        'permission_groups = ["AnonymousUsers"]\n'
        '[[receive_connectors.permissions]]\nuser = "NT AUTHORITY\\\\ANONYMOUS LOGON"\n'
        'extended_rights = ["ms-Exch-SMTP-Accept-Authoritative-Domain-Sender"]\ndeny = true\n'
        '[hub_pool]\nhosts = ["127.0.0.1:2525"]\n'
    )
    assert main(["--config", str(cfg), "receive-connector", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Identity                   Bindings               Enabled",
        "-------------------------  ---------------------  -------",
        "EXSERVER\\Default Frontend  {0.0.0.0:25, [::]:25}  True",
    ]
    assert main(["--config", str(cfg), "receive-connector", "show", "Default Frontend"]) == 0
    out = capsys.readouterr().out
    assert "ExtendedRightsWithheld        : Anonymous: ms-Exch-SMTP-Accept-Authoritative-Domain-Sender" in out
    assert "MaxMessageSize                : 37748736 bytes" in out
    assert "MaxInboundConnectionPerSource : 20" in out and "MessageRateLimit              : Unlimited" in out
    assert main(["--config", str(cfg), "receive-connector", "show", "Nope"]) == 1


def _submission(tmp_path):
    """The Client Frontend on 587 and a users file with one account bound to 10.0.0.0/8."""
    from gateway.auth.users import UserRecord, UsersFile, hash_password
    from gateway.connectors import parse_range

    users = tmp_path / "users.toml"
    UsersFile(users).save([UserRecord("scanner01@corp.example", hash_password("pw"), ("*@apps.corp.example",), (parse_range("10.0.0.0/8"),))])
    connectors = SEED["receive_connectors"] + [{
        "name": "Client Frontend", "role": "frontend", "bindings": ["0.0.0.0:587"], "permission_groups": ["ExchangeUsers"],
        "auth_mechanisms": ["Tls", "BasicAuth", "BasicAuthRequireTLS"], "require_tls": True,
    }]
    return testing.config(
        receive_connectors=connectors, authentication={"users_file": str(users)},
        send_connectors=[{"name": "Internet", "address_spaces": ["*"], "smart_hosts": ["192.0.2.25"]}],
    )


def test_as_a_user_shows_auth_send_as_and_the_replies(tmp_path):
    config = _submission(tmp_path)
    lines = explain(config, "10.1.2.3", 587, "boss@corp.example", ("someone@outside.example",), user="Scanner01@corp.example")
    assert lines[3:] == [
        "  AUTH as scanner01@corp.example (after STARTTLS): accepted with the right password",
        "  may send as: scanner01@corp.example, *@apps.corp.example",
        "Session on EXSERVER\\Client Frontend (frontend) as Authenticated:",
        "  rights: ms-Exch-Accept-Headers-Routing, ms-Exch-Bypass-Anti-Spam, ms-Exch-SMTP-Accept-Any-Recipient, ms-Exch-SMTP-Submit",
        "  (this connector requires STARTTLS before MAIL: 530 5.7.0 otherwise)",
        "  MAIL FROM:<boss@corp.example>  ->  550 5.7.60 SMTP; Client does not have permissions to send as this sender",
        "  RCPT TO:<someone@outside.example>  ->  503 5.5.2 Need mail command",
    ]
    ok = explain(config, "10.1.2.3", 587, "scan@apps.corp.example", ("someone@outside.example",), user="scanner01@corp.example")
    assert ok[-3:] == [
        "  MAIL FROM:<scan@apps.corp.example>  ->  250 2.1.0 Sender OK",
        "  RCPT TO:<someone@outside.example>  ->  250 2.1.5 Recipient OK",
        '      route: send connector "Internet"  domain type: not accepted  (outside.example is not an accepted domain)',
    ]


def test_as_a_user_from_outside_its_networks_or_on_a_connector_without_auth(tmp_path):
    config = _submission(tmp_path)
    outside = explain(config, "192.0.2.50", 587, "scan@apps.corp.example", user="scanner01@corp.example")
    assert outside[3] == "  AUTH as scanner01@corp.example: fails from 192.0.2.50 even with the right password (it may log in only from 10.0.0.0/8)"
    assert outside[-1] == "  MAIL FROM:<scan@apps.corp.example>  ->  530 5.7.57 SMTP; Client was not authenticated to send anonymous mail during MAIL FROM"
    port25 = explain(config, "10.1.2.3", 25, user="scanner01@corp.example")
    assert "  AUTH: not offered on EXSERVER\\Default Frontend (auth_mechanisms: None); scanner01@corp.example cannot log in here" in port25
    unknown = explain(config, "10.1.2.3", 587, user="nobody")
    assert unknown[3] == f"  AUTH: no user 'nobody' in {tmp_path}/users.toml"


DOMAIN_TYPES = dict(
    SEED,
    accepted_domains=[
        {"domain": "corp.example"},
        {"domain": "shared.example", "type": "InternalRelay"},
        {"domain": "partner.example", "type": "ExternalRelay"},
        {"domain": "lost.example", "type": "ExternalRelay"},
    ],
    send_connectors=[
        {"name": "Partner", "address_spaces": ["partner.example", "corp.example"], "smart_hosts": ["mx.partner.example"]},
        {"name": "Legacy", "address_spaces": ["shared.example"], "smart_hosts": ["legacy.corp.example"]},
    ],
)


def test_route_column_shows_mailbox_send_connector_and_domain_type():
    """Each accepted domain type routes as Exchange's does, and the report says where and why."""
    lines = explain(
        testing.config(**DOMAIN_TYPES), "192.0.2.10", 25, "printer@devices.example",
        ("alice@corp.example", "bob@shared.example", "carol@partner.example", "dave@lost.example"),
    )
    assert lines[-8:] == [
        # Authoritative: the mailbox store, though a send connector lists the domain.
        "  RCPT TO:<alice@corp.example>  ->  250 2.1.5 Recipient OK",
        "      route: mailbox  domain type: Authoritative  (corp.example is an Authoritative accepted domain)",
        "  RCPT TO:<bob@shared.example>  ->  250 2.1.5 Recipient OK",
        ('      route: send connector "Legacy"  domain type: InternalRelay  '
         "(shared.example is an InternalRelay accepted domain; no recipient validation, so nobody is known locally)"),
        "  RCPT TO:<carol@partner.example>  ->  250 2.1.5 Recipient OK",
        '      route: send connector "Partner"  domain type: ExternalRelay  (partner.example is an ExternalRelay accepted domain)',
        "  RCPT TO:<dave@lost.example>  ->  550 5.4.4 SMTP; Unable to route recipient, no route to the recipient's domain",
        ("      route: (no route)  domain type: ExternalRelay  "
         "(lost.example is an ExternalRelay accepted domain, and no send connector's address space matches it)"),
    ]


def test_internal_relay_route_follows_recipient_validation():
    """A known InternalRelay recipient goes to the mailbox store, an unknown one out through the send connector."""
    known = {"bob@shared.example"}
    lines = explain(
        testing.config(**DOMAIN_TYPES), "192.0.2.10", 25, "printer@devices.example",
        ("bob@shared.example", "eve@shared.example"), recipient_exists=lambda a: a in known,
    )
    assert lines[-4:] == [
        "  RCPT TO:<bob@shared.example>  ->  250 2.1.5 Recipient OK",
        ("      route: mailbox  domain type: InternalRelay  "
         "(shared.example is an InternalRelay accepted domain; <bob@shared.example> is a known recipient)"),
        "  RCPT TO:<eve@shared.example>  ->  250 2.1.5 Recipient OK",
        ('      route: send connector "Legacy"  domain type: InternalRelay  '
         "(shared.example is an InternalRelay accepted domain; <eve@shared.example> is not a known recipient)"),
    ]


def test_utf8_addresses_are_tried_as_in_a_smtputf8_transaction():
    """receive-connector test with a UTF-8 sender and recipient: judged as a SMTPUTF8 client would be, not refused as 501."""
    lines = explain(testing.config(**SEED), "192.0.2.10", 25, "drucker@gerät.example", ("ålice@corp.example",))
    assert "  MAIL FROM:<drucker@gerät.example>  ->  250 2.1.0 Sender OK" in lines
    assert "  RCPT TO:<ålice@corp.example>  ->  250 2.1.5 Recipient OK" in lines
