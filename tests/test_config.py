"""Config loading: the default file, and every class of error named with file, key and reason."""

from pathlib import Path

import pytest

from gateway.config import ConfigError, default_config_path, load_config
from gateway.domains import DomainType
from gateway.policy.rights import PermissionGroup, Principal, Right

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "gw.toml"
    p.write_text(text)
    return p


def problems(tmp_path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    return [f"{p.key}: {p.reason}" for p in e.value.problems]


BASE = """
[server]
name = "EXSERVER"
fqdn = "mail.corp.example"
[[accepted_domains]]
domain = "corp.example"
[[receive_connectors]]
name = "Default Frontend"
role = "frontend"
bindings = ["0.0.0.0:25"]
permission_groups = ["AnonymousUsers"]
[[receive_connectors]]
name = "Default"
role = "hub"
bindings = ["127.0.0.1:2525"]
remote_ip_ranges = ["127.0.0.0/8"]
permission_groups = ["ExchangeServers"]
auth_mechanisms = ["ExternalAuthoritative"]
"""


def test_default_config_is_the_repository_file_and_parses_whole():
    """The packaged default is etc/exgateway.toml, and it gives the default connectors."""
    assert default_config_path().resolve() == (REPO / "etc" / "exgateway.toml").resolve()
    c = load_config()
    assert [(k.name, k.role, [str(b) for b in k.bindings]) for k in c.receive_connectors] == [
        ("Default Frontend", "frontend", ["0.0.0.0:25"]),
        ("Internal Frontend", "frontend", ["0.0.0.0:25"]),
        ("Client Frontend", "frontend", ["0.0.0.0:587"]),
        ("Client SMTPS", "frontend", ["0.0.0.0:465"]),
        ("Default", "hub", ["127.0.0.1:2525"]),
    ]
    frontend, internal, client, smtps, hub = c.receive_connectors
    for submission in (client, smtps):
        assert submission.permission_groups == {PermissionGroup.EXCHANGE_USERS}
        assert submission.auth_mechanisms == {"Tls", "BasicAuth", "BasicAuthRequireTLS"}
        assert (submission.message_rate_limit, submission.message_rate_source) == (5, "User")
    assert client.require_tls and client.offers_starttls and not client.implicit_tls
    assert smtps.implicit_tls and not smtps.offers_starttls
    # The packaged sample's var_dir is under the current directory (its own is inside the package).
    var = Path.cwd() / "var"
    assert c.var_dir == var
    assert c.auth.backends == ("users_file",) and c.auth.users_file == var / "users.toml"
    assert c.certificate_dir == var / "certs"
    assert frontend.permission_groups == {PermissionGroup.ANONYMOUS_USERS}
    assert [str(r) for r in frontend.remote_ip_ranges] == ["0.0.0.0-255.255.255.255", "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]
    # Outsiders on 25 may not send as the organisation's domains; its own networks may (issue 16 item 10).
    assert frontend.withheld == {(Principal.ANONYMOUS, Right.ACCEPT_AUTHORITATIVE_DOMAIN_SENDER)}
    assert [str(r) for r in internal.remote_ip_ranges] == ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1", "fc00::/7"]
    assert internal.permission_groups == {PermissionGroup.ANONYMOUS_USERS} and internal.withheld == frozenset()
    assert c.auth.check_header_from
    assert frontend.max_message_size == 36 * 1024 * 1024 and frontend.max_recipients == 200
    assert [str(r) for r in hub.remote_ip_ranges] == ["127.0.0.0/8", "::1"]
    assert hub.auth_mechanisms == {"ExchangeServer"} and c.node_secret_file == var / "node.secret"
    assert [(d.domain, d.type) for d in c.accepted_domains] == [("corp.example", DomainType.AUTHORITATIVE)]
    assert [str(h) for h in c.hub_pool.hosts] == ["127.0.0.1:2525"]
    assert (c.queue.directory, c.mailbox.delivery, c.mailbox.maildir) == (var / "queue", "maildir", var / "mailboxes")
    assert (c.queue.retry_interval, c.queue.transient_retry_attempts, c.queue.transient_retry_interval) == (900.0, 6, 60.0)
    assert (c.queue.message_expiration_timeout, c.queue.delay_notification_timeout) == (2 * 86400.0, 4 * 3600.0)


def test_base_config_identity(tmp_path):
    c = load_config(write(tmp_path, BASE))
    assert c.receive_connectors[0].identity == "EXSERVER\\Default Frontend"
    assert c.receive_connectors[0].fqdn == "mail.corp.example"


def test_every_error_reported_at_once_with_file_key_reason(tmp_path):
    text = BASE.replace('[server]', '[server]\ncolour = "blue"').replace('bindings = ["0.0.0.0:25"]', 'bindings = ["0.0.0.0:99999"]\nmax_recipents = 5')
    text += '\n[smtp]\nx = 1\n'
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    lines = str(e.value).splitlines()
    path = str(tmp_path / "gw.toml")
    assert all(line.startswith(path + ": ") for line in lines)
    keys = [p.key for p in e.value.problems]
    assert keys == [
        "smtp",
        "server.colour",
        'receive_connectors[0] ("Default Frontend").max_recipents',
        'receive_connectors[0] ("Default Frontend").bindings[0]',
    ]
    assert "'0.0.0.0:99999': '99999' is not a valid port (1-65535)" in str(e.value)


@pytest.mark.parametrize(
    "change, expected",
    [
        (('remote_ip_ranges = ["127.0.0.0/8"]', 'remote_ip_ranges = ["127.0.0.0/33"]'), 'receive_connectors[1] ("Default").remote_ip_ranges[0]: \'127.0.0.0/33\' is not an IP address, CIDR block or a-b range'),
        (('remote_ip_ranges = ["127.0.0.0/8"]', 'remote_ip_ranges = ["10.0.0.9-10.0.0.1"]'), "ends before it starts"),
        (('role = "hub"', 'role = "edge"'), 'receive_connectors[1] ("Default").role: \'edge\' is not one of frontend, hub'),
        (('permission_groups = ["AnonymousUsers"]', 'permission_groups = ["Anonymous"]'), "'Anonymous' is not one of AnonymousUsers, ExchangeUsers, ExchangeServers, Partners"),
        (('bindings = ["0.0.0.0:25"]', 'bindings = ["mail:25"]'), "'mail' is not an IP address"),
        (('domain = "corp.example"', 'domain = "corp..example"'), "accepted_domains[0].domain: 'corp..example' is not a domain or *.domain wildcard"),
        (('name = "Default"\n', 'name = "Default Frontend"\n'), 'receive_connectors[1].name: \'Default Frontend\' is already the name of receive_connectors[0] ("Default Frontend")'),
        (('fqdn = "mail.corp.example"', 'fqdn = "mail corp"'), "server.fqdn: 'mail corp' is not a valid host name"),
    ],
)
def test_each_error_class_is_named(tmp_path, change, expected):
    old, new = change
    assert old in BASE
    found = problems(tmp_path, BASE.replace(old, new, 1))
    assert any(expected in p for p in found), found


def test_same_binding_same_ranges_names_both_connectors(tmp_path):
    text = BASE + '''
[[receive_connectors]]
name = "Relay A"
role = "frontend"
bindings = ["0.0.0.0:25"]
remote_ip_ranges = ["192.0.2.0/24"]
[[receive_connectors]]
name = "Relay B"
role = "frontend"
bindings = ["0.0.0.0:25"]
remote_ip_ranges = ["192.0.2.0-192.0.2.255"]
'''
    (p,) = problems(tmp_path, text)
    assert "connectors 'Relay A' and 'Relay B' both listen on 0.0.0.0:25" in p
    assert "both list the range 192.0.2.0/24" in p


def test_overlap_without_containment_is_an_error(tmp_path):
    text = BASE + '''
[[receive_connectors]]
name = "A"
role = "frontend"
bindings = ["0.0.0.0:25"]
remote_ip_ranges = ["10.0.0.0-10.0.0.20"]
[[receive_connectors]]
name = "B"
role = "frontend"
bindings = ["0.0.0.0:25"]
remote_ip_ranges = ["10.0.0.10-10.0.0.30"]
'''
    (p,) = problems(tmp_path, text)
    assert "overlaps" in p and "'A' and 'B'" in p


def test_disabled_duplicate_is_fine(tmp_path):
    text = BASE + '''
[[receive_connectors]]
name = "Old"
role = "frontend"
bindings = ["0.0.0.0:25"]
enabled = false
'''
    assert len(load_config(write(tmp_path, text)).receive_connectors) == 3


def test_toml_syntax_error_names_the_file(tmp_path):
    (p,) = problems(tmp_path, "[server\n")
    assert p.startswith("(syntax): ")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "nope.toml")
    assert str(e.value) == f"{tmp_path / 'nope.toml'}: (file): No such file or directory"


def test_durations_and_sizes(tmp_path):
    text = BASE.replace('permission_groups = ["AnonymousUsers"]', 'permission_groups = ["AnonymousUsers"]\nmax_message_size = "10MB"\nconnection_inactivity_timeout = "00:01:30"')
    c = load_config(write(tmp_path, text)).receive_connectors[0]
    assert (c.max_message_size, c.connection_inactivity_timeout) == (10 * 1024 * 1024, 90.0)


def test_permissions_are_parsed_and_checked(tmp_path):
    text = BASE.replace('permission_groups = ["AnonymousUsers"]', '''permission_groups = ["AnonymousUsers"]
[[receive_connectors.permissions]]
user = "NT AUTHORITY\\\\ANONYMOUS LOGON"
extended_rights = ["MS-Exch-SMTP-Accept-Any-Recipient"]
[[receive_connectors.permissions]]
user = "Everyone"
extended_rights = ["ms-Exch-SMTP-Fly"]
deny = "yes"''')
    found = problems(tmp_path, text)
    assert found == [
        ('receive_connectors[0] ("Default Frontend").permissions[1].user: \'Everyone\' is not a principal this gateway knows '
         "(use 'NT AUTHORITY\\ANONYMOUS LOGON', 'NT AUTHORITY\\Authenticated Users' or 'MS Exchange\\Externally Secured Servers')"),
        'receive_connectors[0] ("Default Frontend").permissions[1].extended_rights[0]: \'ms-Exch-SMTP-Fly\' is not an extended right '
        "(known: " + ", ".join(r.value for r in __import__("gateway.policy.rights", fromlist=["Right"]).Right) + ")",
        'receive_connectors[0] ("Default Frontend").permissions[1].deny: \'yes\' is not true or false',
    ]
    good = BASE.replace('permission_groups = ["AnonymousUsers"]', '''permission_groups = ["AnonymousUsers"]
[[receive_connectors.permissions]]
user = "NT AUTHORITY\\\\ANONYMOUS LOGON"
extended_rights = ["MS-Exch-SMTP-Accept-Any-Recipient"]''')
    from gateway.policy.rights import Principal, Right

    c = load_config(write(tmp_path, good)).receive_connectors[0]
    assert c.granted == {(Principal.ANONYMOUS, Right.ACCEPT_ANY_RECIPIENT)} and c.withheld == frozenset()


def uncommented_sample(first_line: str) -> str:
    """etc/exgateway.toml with the commented example that starts at `first_line` made live."""
    lines = (REPO / "etc" / "exgateway.toml").read_text().splitlines()
    start = lines.index(first_line)
    end = start
    while end < len(lines) and lines[end].startswith("# "):
        end += 1
    return "\n".join(lines[:start] + [line[2:] for line in lines[start:end]] + lines[end:])


def test_the_sample_anon_relay_block_works_when_uncommented(tmp_path):
    """The commented seed example in etc/exgateway.toml is a valid connector that relays for its IPs."""
    from gateway.admin.explain import explain

    text = uncommented_sample('# [[receive_connectors]]')
    config = load_config(write(tmp_path, text))
    assert [c.name for c in config.receive_connectors] == [
        "Default Frontend", "Internal Frontend", "Anon Relay", "Client Frontend", "Client SMTPS", "Default"
    ]
    report = explain(config, "198.51.100.7", 25, "app@devices.example", ("someone@outside.example",))
    assert any(line.endswith("198.51.100.0/24 matches (256 addresses) <- chosen") for line in report)
    (rights,) = [line for line in report if line.startswith("  rights: ")]
    assert "ms-Exch-SMTP-Accept-Any-Recipient" in rights


def test_the_sample_routes_the_internet_by_mx_and_its_smart_host_block_works_when_uncommented(tmp_path):
    (internet,) = load_config().send_connectors
    assert (internet.name, internet.address_spaces, internet.dns_routing, internet.port) == ("Internet", ("*",), True, 25)
    config = load_config(write(tmp_path, uncommented_sample("# [[send_connectors]]")))
    internet, partner = config.send_connectors
    assert (partner.name, partner.address_spaces, [str(h) for h in partner.smart_hosts]) == (
        "Partner", ("partner.example", "*.partner.example"), ["smarthost.corp.example:25", "192.0.2.25:25"]
    )


def test_the_sample_dns_block_works_when_uncommented(tmp_path):
    config = load_config(write(tmp_path, uncommented_sample("# [dns]")))
    assert [str(s) for s in config.dns.servers] == ["192.0.2.53:53", "192.0.2.54:53"] and config.dns.timeout == 10.0


def test_the_sample_ldap_block_works_when_uncommented(tmp_path):
    config = load_config(write(tmp_path, uncommented_sample("# [authentication.ldap]")))
    ldap = config.auth.ldap
    assert (ldap.url, ldap.host_port, ldap.base_dn, ldap.timeout) == (
        "ldaps://dc1.corp.example", ("dc1.corp.example", 636, True), "DC=corp,DC=example", 5.0
    )
    assert ldap.login_attributes == ("sAMAccountName", "userPrincipalName", "uid", "mail")


def test_tls_and_auth_settings_are_checked(tmp_path):
    """Each TLS/AUTH mistake names its key and says what is wrong, the certificate name parser's words included."""
    text = BASE.replace('permission_groups = ["AnonymousUsers"]', '''permission_groups = ["ExchangeUsers"]
auth_mechanisms = ["BasicAuthRequireTLS", "Kerberos"]
require_tls = true
tls_certificate_name = "<S>CN=mail.corp.example"
message_rate_source = "Device"''') + '''
[authentication]
backends = ["ldap", "radius"]
failure_tarpit = "soon"
[authentication.ldap]
url = "http://dc1"
start_tls = true
bind_dn = "cn=svc"
'''
    found = problems(tmp_path, text)
    where = 'receive_connectors[0] ("Default Frontend")'
    assert found == [
        f"{where}.auth_mechanisms[1]: 'Kerberos' is not one of None, Tls, BasicAuth, BasicAuthRequireTLS, ExternalAuthoritative, ExchangeServer",
        f"{where}.tls_certificate_name: the issuer part <I>... is missing (expected <I>issuer<S>subject)",
        f"{where}.message_rate_source: 'Device' is not one of None, IPAddress, User, All",
        f"{where}.auth_mechanisms: BasicAuthRequireTLS needs TLS: add \"Tls\" or set implicit_tls = true",
        f"{where}.require_tls: require_tls needs TLS offered: add \"Tls\" to auth_mechanisms or set implicit_tls = true",
        "authentication.backends[1]: 'radius' is not one of users_file, ldap",
        "authentication.ldap.base_dn: required",
        "authentication.ldap.url: 'http://dc1' is not an ldap://host[:port] or ldaps://host[:port] URL",
        "authentication.ldap.bind_password: bind_dn and bind_password go together (or leave both out to search anonymously)",
        "authentication.failure_tarpit: 'soon' is not a duration (use e.g. '30s', '5m', '2d' or '00:05:00')",
    ]


def test_credential_cache_ttl_defaults_to_an_hour_0s_turns_it_off_and_a_bad_one_is_named(tmp_path):
    """Issue 22 item 1: [authentication] credential_cache_ttl."""
    assert load_config(write(tmp_path, BASE)).auth.credential_cache_ttl == 3600.0
    assert load_config(write(tmp_path, BASE + '\n[authentication]\ncredential_cache_ttl = "0s"\n')).auth.credential_cache_ttl == 0.0
    assert problems(tmp_path, BASE + '\n[authentication]\ncredential_cache_ttl = "a while"\n') == [
        "authentication.credential_cache_ttl: 'a while' is not a duration (use e.g. '30s', '5m', '2d' or '00:05:00')",
    ]


def test_path_problems_name_the_key(tmp_path):
    """A var_dir that cannot be created (a file stands in the way) is named with its key before start-up."""
    from gateway.config import path_problems

    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    config = load_config(write(tmp_path, BASE.replace('fqdn = "mail.corp.example"', f'fqdn = "mail.corp.example"\nvar_dir = "{blocker}/var"')))
    found = [f"{p.key}: {p.reason}" for p in path_problems(config)]
    assert found[0] == f"server.var_dir: {blocker}/var cannot be created: {blocker} is not a directory"
    assert {line.split(":")[0] for line in found} == {"server.var_dir", "queue.directory", "protocol_log.directory", "mailbox.maildir", "certificates.directory", "message_tracking.directory"}
    assert path_problems(load_config(write(tmp_path, BASE.replace('fqdn = "mail.corp.example"', f'fqdn = "mail.corp.example"\nvar_dir = "{tmp_path}/ok"')))) == []


def test_proxy_protocol_needs_trusted_proxies_and_one_setting_per_binding():
    import pytest

    from gateway import testing

    with pytest.raises(ConfigError) as e:
        testing.config(receive_connectors=[
            {"name": "A", "role": "frontend", "bindings": ["0.0.0.0:25"], "proxy_protocol": True},
            {"name": "B", "role": "frontend", "bindings": ["0.0.0.0:25"], "remote_ip_ranges": ["192.0.2.10"],
             "proxy_protocol": True, "trusted_proxies": ["10.0.0.5"]},
        ])
    assert [f"{p.key}: {p.reason}" for p in e.value.problems] == [
        ('receive_connectors[0] ("A").trusted_proxies: proxy_protocol needs the balancers\' addresses: '
         "a header from anyone else is a spoofed client address"),
        ('receive_connectors[1] ("B").proxy_protocol: the connectors on 0.0.0.0:25 (\'A\', \'B\') must agree on proxy_protocol '
         "and trusted_proxies: the header is read before the connector is chosen"),
    ]


def test_health_listeners_per_role():
    from gateway import testing

    c = testing.config(health={"listen": "127.0.0.1:8025", "frontend_listen": "127.0.0.1:8026", "min_free_space": "1GB"})
    assert (str(c.health_listen), str(c.health_frontend_listen), c.min_free_space) == ("127.0.0.1:8025", "127.0.0.1:8026", 1024**3)
    assert testing.config().health_listen is None


def test_max_memory_percent_defaults_to_exchanges_94_and_is_checked(tmp_path):
    from gateway import testing

    assert testing.config().max_memory_percent == 94.0
    assert testing.config(health={"max_memory_percent": 90}).max_memory_percent == 90.0
    for bad, shown in (("0", "0"), ("101", "101"), ('"94%"', "'94%'"), ("true", "True")):
        text = BASE + f"\n[health]\nmax_memory_percent = {bad}\n"
        assert [p for p in problems(tmp_path, text) if p.startswith("health.")] == [
            f"health.max_memory_percent: {shown} is not a percentage above 0 and at most 100"
        ]


def test_workers_is_a_count_or_auto(tmp_path):
    import os

    assert load_config(write(tmp_path, BASE)).workers == 1
    assert load_config(write(tmp_path, BASE.replace('fqdn = "mail.corp.example"', 'fqdn = "mail.corp.example"\nworkers = 3'))).workers == 3
    auto = load_config(write(tmp_path, BASE.replace('fqdn = "mail.corp.example"', 'fqdn = "mail.corp.example"\nworkers = "auto"'))).workers
    assert auto == len(os.sched_getaffinity(0))
    for bad, shown in (("0", "0"), ("65", "65"), ('"many"', "'many'"), ("true", "True")):
        text = BASE.replace('fqdn = "mail.corp.example"', f'fqdn = "mail.corp.example"\nworkers = {bad}')
        assert [p for p in problems(tmp_path, text) if p.startswith("server.workers")] == [
            f'server.workers: {shown} is not "auto" or a whole number from 1 to 64'
        ]


def test_the_sample_recipient_validation_block_works_when_uncommented(tmp_path):
    """Off in the sample (no directory); the commented block turns on the list source; ldap needs [authentication.ldap]."""
    assert load_config().recipient_validation.sources == ()
    assert load_config().queue.max_ndrs_per_sender_domain == 100
    config = load_config(write(tmp_path, uncommented_sample("# [recipient_validation]")))
    rv = config.recipient_validation
    assert (rv.sources, rv.list_file, rv.cache_ttl) == (("list",), config.var_dir / "recipients.txt", 300.0)
    with_ldap = load_config(write(tmp_path, uncommented_sample("# [authentication.ldap]")))
    assert with_ldap.recipient_validation.sources == ("ldap",)
    text = BASE + '[recipient_validation]\nsources = ["ldap", "dns", "callout"]\n'
    assert problems(tmp_path, text) == [
        "recipient_validation.sources[1]: 'dns' is not one of users_file, ldap, list, callout",
        'recipient_validation.sources: "ldap" is listed but there is no [authentication.ldap] section',
        'recipient_validation.sources: "callout" asks the mailbox next hop: it needs [mailbox] delivery = "smtp"',
    ]


def test_the_mailbox_next_hop_takes_a_send_connectors_tls_and_auth_settings(tmp_path):
    """[mailbox] delivery = "smtp": tls, certificate checks and AUTH with the password from a file (issue 18 item 5)."""
    var = tmp_path / "var"
    var.mkdir()
    (var / "store.password").write_text("St0re-secret\n")
    text = BASE.replace('fqdn = "mail.corp.example"', f'fqdn = "mail.corp.example"\nvar_dir = "{var}"') + '''
[mailbox]
delivery = "smtp"
next_hop = "mailstore.corp.example:25"
tls = "required"
tls_domain = "mailstore.corp.example"
tls_ca_file = "store-ca.pem"
auth_user = "exgateway"
auth_password_file = "store.password"
'''
    mailbox = load_config(write(tmp_path, text)).mailbox
    security = mailbox.security()
    assert (security.tls, security.tls_domain, security.ca_file, security.auth, security.username, security.password) == (
        "required", "mailstore.corp.example", var / "store-ca.pem", "BasicAuthRequireTLS", "exgateway", "St0re-secret"
    )
    assert "St0re-secret" not in repr(mailbox)


def test_the_mailbox_next_hop_defaults_to_opportunistic_tls_without_auth(tmp_path):
    mailbox = load_config(write(tmp_path, BASE + '[mailbox]\ndelivery = "smtp"\nnext_hop = "127.0.0.1:25"\n')).mailbox
    assert (mailbox.security().tls, mailbox.security().auth) == ("opportunistic", "None")


def test_mailbox_tls_and_auth_mistakes_name_their_key(tmp_path):
    text = BASE + '''
[mailbox]
delivery = "smtp"
next_hop = "127.0.0.1:25"
tls = "none"
tls_domain = "mailstore.corp.example"
smart_host_auth = "BasicAuthRequireTLS"
auth_user = "exgateway"
auth_password = "inline"
auth_password_file = "missing.password"
'''
    found = problems(tmp_path, text)
    assert found[0] == "mailbox.auth_password_file: give auth_password or auth_password_file, not both"
    assert found[1].startswith("mailbox.auth_password_file: cannot read a password from ") and "missing.password" in found[1]
    assert found[2:] == [
        "mailbox.tls: BasicAuthRequireTLS needs TLS: tls = \"opportunistic\" or \"required\" (or smart_host_auth = \"BasicAuth\" to send credentials in clear)",
        "mailbox.tls: tls_domain and tls_ca_file check certificates, which only tls = \"required\" does",
    ]


def test_the_sample_rewrite_block_works_when_uncommented(tmp_path):
    from gateway.address import Address
    from gateway.rewrite import Rewriter

    config = load_config(write(tmp_path, uncommented_sample("# [[rewrite]]")))
    assert Rewriter(config.rewrite).sender(Address("root", "printer01.local")) == Address("printer01", "corp.example")


def test_the_sample_dkim_block_works_when_uncommented(tmp_path):
    from gateway.sign.keys import KeyStore

    KeyStore(tmp_path / "var" / "dkim").new_key("corp.example", "s202612")
    text = uncommented_sample("# [dkim]").replace('var_dir = "', f'var_dir = "{tmp_path}/var" # ', 1)
    config = load_config(write(tmp_path, text))
    assert config.dkim.selectors == {"corp.example": "s202612"} and config.dkim.sign_local is False


def test_the_sample_journal_block_works_when_uncommented(tmp_path):
    text = uncommented_sample("# [[journal_rules]]").replace(
        "[[journal_rules]]", '[[accepted_domains]]\ndomain = "archive.corp.example"\n\n[[journal_rules]]', 1
    )
    (rule,) = load_config(write(tmp_path, text)).journal_rules
    assert (rule.journal_recipient, rule.report, rule.recipients) == ("journal@archive.corp.example", "envelope", ("*@corp.example",))


def test_the_sample_microsoft_365_block_works_when_uncommented(tmp_path):
    """The commented "Microsoft 365" send connector: XOAUTH2 with a client secret, scoped to the scanners."""
    from gateway.address import parse_mailbox
    from gateway.domains import AcceptedDomains
    from gateway.route.router import Router
    from gateway.route.source import RouteSource

    lines = (REPO / "etc" / "exgateway.toml").read_text().splitlines()
    start = lines.index('# name = "Microsoft 365"') - 1
    end = start
    while end < len(lines) and lines[end].startswith("# "):
        end += 1
    config = load_config(write(tmp_path, "\n".join(lines[:start] + [line[2:] for line in lines[start:end]] + lines[end:])))
    internet, m365 = config.send_connectors
    assert (m365.name, m365.smart_host_auth, m365.auth_user, [str(h) for h in m365.smart_hosts], m365.oauth_scope, m365.source_senders) == (
        "Microsoft 365", "XOAUTH2", "relay@corp.example", ["smtp.office365.com:587"], "https://outlook.office365.com/.default",
        ("*@scan.corp.example",))
    router = Router(AcceptedDomains(config.accepted_domains), config.send_connectors)
    assert router.route(parse_mailbox("x@outside.example"), RouteSource("mfp1@scan.corp.example")).connector is m365
    assert router.route(parse_mailbox("x@outside.example"), RouteSource("app@corp.example")).connector is internet
