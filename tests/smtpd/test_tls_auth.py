"""STARTTLS, implicit TLS and AUTH in the protocol, over a StringTransport that records startTLS."""

import base64
import csv
import dataclasses
import io

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateway import testing
from gateway.auth.identity import DirectoryUnavailable
from gateway.auth.portal import Authenticator
from gateway.auth.service import AuthService
from gateway.auth.throttle import AuthThrottle
from gateway.auth.users import UserRecord, UsersFile, UsersFileChecker, hash_password
from gateway.domains import AcceptedDomains
from gateway.policy.checks import SessionPolicy
from gateway.policy.limits import ConnectionLimits
from gateway.smtpd.protocol import ESMTPServer

NOW = 1_795_000_000.0
CLIENT_FRONTEND = {
    "name": "Client Frontend", "role": "frontend", "bindings": ["127.0.0.1:587"], "permission_groups": ["ExchangeUsers"],
    "auth_mechanisms": ["Tls", "BasicAuth", "BasicAuthRequireTLS"], "require_tls": True, "tarpit_interval": "0s",
}


class TLSTransport(StringTransport):
    """Records startTLS; what was written before it went out in clear text."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.tls = None
        self.clear_text = None

    def startTLS(self, options):
        self.tls = options
        self.clear_text = self.value()

    def getHandle(self):
        class Conn:
            def get_protocol_version_name(self):
                return "TLSv1.3"

            def get_cipher_name(self):
                return "TLS_AES_256_GCM_SHA384"

        return Conn()


@dataclasses.dataclass
class FakeCert:
    thumbprint: str = "0D6907D9B41496654263AA0D932CFFA775399518"
    subject: str = "CN=mail.corp.example"

    def served(self, connection):
        """One key type only: the store's StoredCertificate answers itself."""
        return self


class FakeTLS:
    def options_for(self, connector):
        return "tls-options", FakeCert()


class Recorder:
    """A protocol log that keeps (event, data, context) of each CSV line it is given (one or several at a time)."""

    def __init__(self, clock):
        self.clock = clock
        self.lines = []

    def record(self, now, format, *values):
        for row in csv.reader(io.StringIO(format(now, *values), newline="")):
            self.lines.append((row[6], row[7], row[8]))


@pytest.fixture(scope="module")
def users_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("users") / "users.toml"
    UsersFile(path).save([UserRecord("scanner01@corp.example", hash_password("right-pw"), ("*@apps.corp.example",))])
    return path


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Client:
    def __init__(self, users_path, connector=None, auth_settings=None, ip="192.0.2.1", backends=None, **connector_changes):
        raw = dict(CLIENT_FRONTEND, **(connector or {}))
        cfg = testing.config(receive_connectors=[raw], authentication=dict({"users_file": str(users_path)}, **(auth_settings or {})))
        self.connector = dataclasses.replace(cfg.receive_connectors[0], **connector_changes)
        self.clock = Clock()
        self.clock.advance(NOW)
        a = cfg.auth
        checkers = backends or [("users_file", UsersFileChecker(UsersFile(users_path), lambda f, *args: f(*args)))]
        self.auth = AuthService(
            Authenticator(checkers),
            AuthThrottle(self.clock, a.max_failures_per_source, a.max_failures_per_user, a.failure_window, a.lockout), a,
        )
        self.handler = testing.FakeHandler()
        self.log = Recorder(self.clock)
        policy = SessionPolicy(AcceptedDomains(cfg.accepted_domains))
        self.proto = ESMTPServer(
            self.connector, self.handler, policy, self.clock, ConnectionLimits(), self.log, tls=FakeTLS(), auth=self.auth
        )
        self.transport = TLSTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 587), peerAddress=IPv4Address("TCP", ip, 40000))
        self.proto.makeConnection(self.transport)
        self.banner = self.read()

    def read(self):
        out = self.transport.value().decode()
        self.transport.clear()
        return out.split("\r\n")[:-1]

    def send(self, data):
        self.proto.dataReceived(data.encode() if isinstance(data, str) else data)
        return self.read()

    def starttls(self):
        assert self.send("EHLO dev\r\n")[-1] == "250 HELP"
        assert self.send("STARTTLS\r\n") == ["220 2.0.0 SMTP server ready"]
        self.proto.handshakeCompleted()
        return self.send("EHLO dev\r\n")

    def login(self, password="right-pw"):
        self.starttls()
        return self.send(f"AUTH PLAIN {b64(chr(0) + 'scanner01@corp.example' + chr(0) + password)}\r\n")


def test_starttls_offered_in_clear_and_auth_only_after_tls(users_path):
    c = Client(users_path)
    before = c.send("EHLO dev\r\n")
    assert "250-STARTTLS" in before and not any("AUTH" in line for line in before)
    after = c.starttls()
    assert "250-AUTH PLAIN LOGIN" in after and "250-STARTTLS" not in after
    assert c.transport.tls == "tls-options"


def test_commands_pipelined_after_starttls_are_discarded_not_run(users_path):
    """CVE-2011-0411: what follows STARTTLS in the same packet never executes, before or after the handshake."""
    c = Client(users_path)
    c.send("EHLO dev\r\n")
    replies = c.send("STARTTLS\r\nMAIL FROM:<scanner01@corp.example>\r\nRCPT TO:<a@ext.example>\r\nDATA\r\n")
    assert replies == ["220 2.0.0 SMTP server ready"]
    assert c.transport.clear_text == b"220 2.0.0 SMTP server ready\r\n"
    assert c.handler.transactions == []
    c.proto.handshakeCompleted()
    # The session starts over: no HELO, no transaction, no identity (MAIL without EHLO after TLS is tolerated, as in Postfix).
    assert c.send("MAIL FROM:<scanner01@corp.example>\r\n") == [
        "530 5.7.57 SMTP; Client was not authenticated to send anonymous mail during MAIL FROM"
    ]
    assert c.proto.session.helo is None
    assert c.proto.session.tls.version == "TLSv1.3"


def test_starttls_only_once(users_path):
    c = Client(users_path)
    c.starttls()
    assert c.send("STARTTLS\r\n") == ["503 5.5.2 Only one STARTTLS command can be issued per session"]


def test_require_tls_refuses_mail_in_clear(users_path):
    c = Client(users_path)
    c.send("EHLO dev\r\n")
    assert c.send("MAIL FROM:<a@corp.example>\r\n") == ["530 5.7.0 Must issue a STARTTLS command first"]


def test_auth_in_clear_text_is_refused(users_path):
    c = Client(users_path)
    c.send("EHLO dev\r\n")
    assert c.send(f"AUTH PLAIN {b64(chr(0) + 'scanner01@corp.example' + chr(0) + 'right-pw')}\r\n") == [
        "504 5.7.4 Unrecognized authentication type"
    ]


def test_auth_plain_then_relay_as_own_address_and_send_as_refused(users_path):
    c = Client(users_path)
    assert c.login() == ["235 2.7.0 Authentication successful"]
    assert c.send("MAIL FROM:<boss@corp.example>\r\n") == ["550 5.7.60 SMTP; Client does not have permissions to send as this sender"]
    assert c.send("MAIL FROM:<app@apps.corp.example>\r\n") == ["250 2.1.0 Sender OK"]
    assert c.send("RCPT TO:<someone@outside.example>\r\n") == ["250 2.1.5 Recipient OK"]
    assert c.proto.session.proto == "ESMTPSA" and c.proto.session.identity.name == "scanner01@corp.example"
    assert c.send("AUTH PLAIN x\r\n") == ["503 5.5.1 Already authenticated"]


def test_auth_login_with_challenges(users_path):
    c = Client(users_path)
    c.starttls()
    assert c.send("AUTH LOGIN\r\n") == ["334 VXNlcm5hbWU6"]
    assert c.send(b64("scanner01@corp.example") + "\r\n") == ["334 UGFzc3dvcmQ6"]
    assert c.send(b64("right-pw") + "\r\n") == ["235 2.7.0 Authentication successful"]


def test_auth_cancel_and_the_session_goes_on(users_path):
    c = Client(users_path)
    c.starttls()
    assert c.send("AUTH LOGIN\r\n") == ["334 VXNlcm5hbWU6"]
    assert c.send("*\r\n") == ["501 5.0.0 Authentication cancelled"]
    assert c.send("NOOP\r\n") == ["250 2.0.0 OK"]


def test_passwords_never_reach_the_protocol_log(users_path):
    c = Client(users_path, {"protocol_logging_level": "Verbose"})
    c.login()
    c.send("AUTH LOGIN\r\n")
    logged = [data for event, data, _ in c.log.lines]
    assert "AUTH PLAIN ****" in logged
    assert not any("right-pw" in d or b64("right-pw") in d or "cmlnaHQtcHc" in d for d in logged)
    assert ("*", "scanner01@corp.example", "authenticated") in c.log.lines
    assert ("*", "0D6907D9B41496654263AA0D932CFFA775399518", "Certificate thumbprint") in c.log.lines
    assert ("*", "TLSv1.3 TLS_AES_256_GCM_SHA384", "TLS negotiation succeeded") in c.log.lines


def process_log_lines(run):
    """The process log's lines (exgateway.smtpd) while `run` runs."""
    from twisted.logger import formatEvent, globalLogPublisher

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        run()
    finally:
        globalLogPublisher.removeObserver(events.append)
    return [formatEvent(e) for e in events if e.get("log_namespace") == "exgateway.smtpd"]


@pytest.mark.parametrize("level", ["None", "Verbose"])
def test_the_process_log_says_tls_and_login_only_where_the_connector_keeps_no_protocol_log(users_path, level):
    """None: connect, tls and auth lines; Verbose: the protocol log has them (thumbprint, negotiation, authenticated), the process log nothing."""
    lines = process_log_lines(lambda: Client(users_path, {"protocol_logging_level": level}).login())
    if level == "Verbose":
        assert lines == []
        return
    assert [line.split()[0] for line in lines] == ["connect", "tls", "auth"]
    assert lines[1].endswith(" TLSv1.3 TLS_AES_256_GCM_SHA384 certificate 0D6907D9B41496654263AA0D932CFFA775399518")
    assert lines[2].endswith(" scanner01@corp.example via PLAIN from 192.0.2.1: ok")


def test_a_refused_login_is_in_the_process_log_on_every_connector(users_path):
    """A failed login stays in the process log where the protocol log also has it: the admin's security trail."""
    lines = process_log_lines(lambda: Client(users_path, {"protocol_logging_level": "Verbose"}).login("wrong-pw"))
    assert len(lines) == 1 and lines[0].startswith("auth ") and "scanner01@corp.example from 192.0.2.1: 535" in lines[0]


def test_failures_wait_the_tarpit_and_the_third_ends_the_session(users_path):
    c = Client(users_path)
    assert c.login("wrong") == []
    c.clock.advance(1.9)
    assert c.read() == []
    c.clock.advance(0.1)
    assert c.read() == ["535 5.7.3 Authentication unsuccessful"]
    c.send(f"AUTH PLAIN {b64(chr(0) + 'scanner01@corp.example' + chr(0) + 'wrong2')}\r\n")
    c.clock.advance(2)
    assert c.read() == ["535 5.7.3 Authentication unsuccessful"]
    c.send(f"AUTH PLAIN {b64(chr(0) + 'nobody' + chr(0) + 'x')}\r\n")
    c.clock.advance(2)
    assert c.read() == ["535 5.7.3 Authentication unsuccessful", "421 4.7.0 Too many errors on this connection, closing transmission channel"]
    assert c.transport.disconnecting


def test_a_locked_out_source_is_refused_even_with_the_right_password(users_path):
    settings = {"max_failures_per_source": 2, "max_failures_per_connection": 5}
    c = Client(users_path, auth_settings=settings)
    c.login("wrong")
    c.clock.advance(2)
    c.send(f"AUTH PLAIN {b64(chr(0) + 'scanner01@corp.example' + chr(0) + 'wrong')}\r\n")
    c.clock.advance(2)
    assert c.read() == ["535 5.7.3 Authentication unsuccessful"]
    c.send(f"AUTH PLAIN {b64(chr(0) + 'scanner01@corp.example' + chr(0) + 'right-pw')}\r\n")
    c.clock.advance(2)
    assert c.read() == ["454 4.7.0 Temporary authentication failure"]
    assert c.proto.session.identity is None
    # After the lockout a new connection logs in.
    c.clock.advance(900)
    d = Client(users_path, auth_settings=settings)
    d.auth.throttle = c.auth.throttle
    d.proto.auth = d.auth
    assert d.login() == ["235 2.7.0 Authentication successful"]


def test_a_directory_outage_is_a_temporary_failure_at_once(users_path):
    class Down:
        credentialInterfaces = ()

        def requestAvatarId(self, credentials):
            from twisted.internet.defer import fail

            return fail(DirectoryUnavailable("timeout"))

    c = Client(users_path, backends=[("ldap", Down())])
    assert c.login() == ["454 4.7.0 Temporary authentication failure"]
    assert c.proto.auth_failures == 0


def test_message_rate_per_user(users_path):
    c = Client(users_path, {"message_rate_limit": 2, "message_rate_source": "User"})
    c.login()
    for _ in range(2):
        assert c.send("MAIL FROM:<scanner01@corp.example>\r\n") == ["250 2.1.0 Sender OK"]
        c.send("RSET\r\n")
    assert c.send("MAIL FROM:<scanner01@corp.example>\r\n") == [
        "421 4.4.2 Message submission rate for this client has exceeded the configured limit"
    ]


def test_header_from_checked_when_asked(users_path):
    c = Client(users_path, auth_settings={"check_header_from": True})
    c.login()
    c.send("MAIL FROM:<scanner01@corp.example>\r\nRCPT TO:<a@ext.example>\r\nDATA\r\n")
    assert c.send("From: Boss <boss@corp.example>\r\nSubject: pay this\r\n\r\nhi\r\n.\r\n") == [
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
    ]
    c.send("MAIL FROM:<scanner01@corp.example>\r\nRCPT TO:<a@ext.example>\r\nDATA\r\n")
    c.send("From: Scanner <scanner01@corp.example>\r\n\r\nscan\r\n.\r\n")
    assert c.handler.transactions[-1].finished


def test_implicit_tls_starts_before_the_banner(users_path):
    c = Client(users_path, {"implicit_tls": True, "require_tls": False, "bindings": ["127.0.0.1:465"]})
    assert c.transport.clear_text == b""
    assert c.banner[0].startswith("220 mail.corp.example")
    c.proto.handshakeCompleted()
    assert "250-STARTTLS" not in c.send("EHLO dev\r\n")
