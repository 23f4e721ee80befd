"""`exgateway receive-connector test|list|show`: the seed's anonymous relay, explained."""

from gateway import testing
from gateway.admin.cli import main
from gateway.admin.explain import explain

SEED = dict(
    receive_connectors=[
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
)


def test_relay_ip_lands_on_the_relay_connector_and_may_relay():
    lines = explain(testing.config(**SEED), "192.0.2.10", 25, "printer@devices.example", ("someone@outside.example", "alice@corp.example"))
    assert lines == [
        "Connection from 192.0.2.10 to port 25:",
        "  binding 0.0.0.0:25:",
        "    EXSERVER\\Default Frontend  0.0.0.0-255.255.255.255 matches (4294967296 addresses); lost: a more specific range won",
        "    EXSERVER\\Anon Relay        192.0.2.10 matches (1 address) <- chosen",
        "    EXSERVER\\Retired           disabled",
        "Session on EXSERVER\\Anon Relay (frontend) as Anonymous:",
        "  rights: ms-Exch-Accept-Headers-Routing, ms-Exch-SMTP-Accept-Any-Recipient, ms-Exch-SMTP-Accept-Any-Sender, "
        "ms-Exch-SMTP-Accept-Authoritative-Domain-Sender, ms-Exch-SMTP-Submit",
        "  MAIL FROM:<printer@devices.example>  ->  250 2.1.0 Sender OK",
        # The frontend lets it through; the hub has no route outside the accepted domains yet.
        "  RCPT TO:<someone@outside.example>  ->  550 5.4.4 SMTP; Unable to route recipient, no route to the recipient's domain",
        "  RCPT TO:<alice@corp.example>  ->  250 2.1.5 Recipient OK",
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
