"""`exgateway route test`: the send connector and smart hosts each recipient would take from a source, and why."""

from gateway.admin.cli import main

CONFIG = """
[server]
name = "EXSERVER"
fqdn = "mail.corp.example"
var_dir = "{var}"
[[accepted_domains]]
domain = "corp.example"
[[receive_connectors]]
name = "Client Frontend"
role = "frontend"
bindings = ["127.0.0.1:2587"]
permission_groups = ["ExchangeUsers"]
auth_mechanisms = ["Tls", "BasicAuth"]
[[receive_connectors]]
name = "Default"
role = "hub"
bindings = ["127.0.0.1:2525"]
remote_ip_ranges = ["127.0.0.0/8"]
permission_groups = ["ExchangeServers"]
auth_mechanisms = ["ExternalAuthoritative"]
[[send_connectors]]
name = "Internet"
address_spaces = ["*"]
[[send_connectors]]
name = "Microsoft 365"
address_spaces = ["*"]
smart_hosts = ["smtp.office365.com:587"]
cost = 5
source_senders = ["*@scan.corp.example"]
[[send_connectors]]
name = "ERP relay"
address_spaces = ["*"]
smart_hosts = ["erp-relay.corp.example:2525"]
source_receive_connectors = ["Client Frontend"]
source_users = ["erp-app"]
"""


def _run(tmp_path, capsys, *args):
    path = tmp_path / "exgateway.toml"
    path.write_text(CONFIG.format(var=tmp_path / "var"))
    code = main(["--config", str(path), "route", "test", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_scanner_takes_the_microsoft_365_connector_and_others_the_internet(tmp_path, capsys):
    code, out, _ = _run(tmp_path, capsys, "--sender", "mfp1@scan.corp.example", "--rcpt", "a@outside.example", "bob@corp.example")
    assert code == 0
    assert out.splitlines() == [
        "From <mfp1@scan.corp.example> via (any receive connector):",
        "  RCPT <a@outside.example>:",
        ('      route: send connector "Microsoft 365"  domain type: not accepted  (outside.example is not an accepted domain; '
         "the message's source matches source_senders *@scan.corp.example)"),
        "      next hop: smart hosts smtp.office365.com:587",
        "      send connectors:",
        "        Internet       address space * matches, any source, cost 1; lost: a more specific address space, a closer source or a lower cost won",
        "        Microsoft 365  address space * matches, source matches source_senders *@scan.corp.example, cost 5  <- chosen",
        "        ERP relay      address space * matches; source does not: source_receive_connectors Client Frontend; source_users erp-app",
        "  RCPT <bob@corp.example>:",
        "      route: mailbox  domain type: Authoritative  (corp.example is an Authoritative accepted domain)",
        f"      next hop: mailbox delivery, Maildir under {tmp_path / 'var' / 'mailboxes'}",
    ]
    code, out, _ = _run(tmp_path, capsys, "--sender", "app@corp.example", "--rcpt", "a@outside.example")
    assert '      route: send connector "Internet"' in out and "DNS MX of the recipient's domain, port 25" in out


def test_the_receive_connector_and_user_pick_the_erp_route(tmp_path, capsys):
    code, out, _ = _run(tmp_path, capsys, "--sender", "erp@corp.example", "--rcpt", "a@outside.example",
                        "--connector", "client frontend", "--user", "ERP-App")
    assert code == 0 and out.splitlines()[0] == "From <erp@corp.example> via EXSERVER\\Client Frontend as ERP-App:"
    assert '      route: send connector "ERP relay"' in out and "next hop: smart hosts erp-relay.corp.example:2525" in out


def test_an_unknown_receive_connector_is_named(tmp_path, capsys):
    code, _, err = _run(tmp_path, capsys, "--sender", "a@corp.example", "--rcpt", "b@x.example", "--connector", "Nope")
    assert code == 2 and err.strip() == "exgateway: no receive connector 'Nope' (`exgateway receive-connector list` shows them)"


REWRITE = """
[[rewrite]]
match = "root@printer01.local"
to = "printer01@corp.example"
[[rewrite]]
match = "*@*.corp.local"
to = "*@corp.example"
direction = "inbound"
"""


def _run_rewriting(tmp_path, capsys, *args):
    path = tmp_path / "exgateway.toml"
    path.write_text(CONFIG.format(var=tmp_path / "var") + REWRITE)
    code = main(["--config", str(path), "route", "test", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_rewrite_rules_are_shown_and_the_rewritten_recipient_is_routed(tmp_path, capsys):
    code, out, _ = _run_rewriting(tmp_path, capsys, "--sender", "root@printer01.local", "--rcpt", "bob@mail.corp.local", "a@outside.example")
    assert code == 0
    assert out.splitlines()[:6] == [
        "From <root@printer01.local> via (any receive connector):",
        "  sender rewritten: root@printer01.local -> printer01@corp.example (rule root@printer01.local -> printer01@corp.example, outbound)",
        "  RCPT <bob@mail.corp.local>:",
        "      rewritten: bob@mail.corp.local -> bob@corp.example (rule *@*.corp.local -> *@corp.example, inbound)",
        "      route: mailbox  domain type: Authoritative  (corp.example is an Authoritative accepted domain)",
        f"      next hop: mailbox delivery, Maildir under {tmp_path / 'var' / 'mailboxes'}",
    ]
    # An address no rule matches gets no rewrite line: its route follows its RCPT line directly.
    assert out.splitlines()[6:8] == [
        "  RCPT <a@outside.example>:",
        '      route: send connector "Internet"  domain type: not accepted  (outside.example is not an accepted domain)',
    ]


def test_no_rule_matching_prints_no_rewrite_line(tmp_path, capsys):
    code, out, _ = _run_rewriting(tmp_path, capsys, "--sender", "admin@printer01.local", "--rcpt", "bob@corp.local")
    assert code == 0
    assert "rewritten" not in out
    assert out.splitlines()[:3] == [
        "From <admin@printer01.local> via (any receive connector):",
        "  RCPT <bob@corp.local>:",
        '      route: send connector "Internet"  domain type: not accepted  (corp.local is not an accepted domain)',
    ]
