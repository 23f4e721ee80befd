"""
What real clients send that the server used to refuse (issue 18 items 6 and
14): AUTH= on MAIL, BODY=BINARYMIME, HELP, MAIL straight after STARTTLS.
"""

import pytest

from gateway import testing
from tests.smtpd.test_protocol import Client
from tests.smtpd.test_tls_auth import Client as TLSClient
from tests.smtpd.test_tls_auth import users_path  # noqa: F401 (a fixture)


def mail(c: Client, line: str) -> list[str]:
    c.hello()
    return c.send(line + "\r\n")


@pytest.mark.parametrize("param", ["AUTH=<>", "AUTH=ceo@corp.example", "auth=sales+2Bteam@corp.example"])
def test_auth_parameter_is_accepted_and_recorded_as_null_from_an_untrusted_client(param):
    """Postfix's smtp_send_dummy_mail_auth (AUTH=<>), Outlook and .NET: 250, and nobody but a gateway node may name a submitter."""
    c = Client()
    assert mail(c, f"MAIL FROM:<app@devices.example> {param}") == ["250 2.1.0 Sender OK"]
    assert c.handler.transactions[0].mail.auth == "<>"


def test_auth_parameter_from_a_gateway_node_is_kept_xtext_decoded():
    c = Client("Default")
    c.hello()
    c.send(testing.node_login(testing.node_credential()))
    assert mail(c, "MAIL FROM:<app@devices.example> AUTH=sales+2Bteam@corp.example SIZE=100") == ["250 2.1.0 Sender OK"]
    assert c.handler.transactions[0].mail.auth == "sales+team@corp.example"
    c.send("RSET\r\n")
    assert c.send("MAIL FROM:<> AUTH=<>\r\n") == ["250 2.1.0 Sender OK"]
    assert c.handler.transactions[1].mail.auth == "<>"


def test_mail_without_auth_parameter_records_none():
    c = Client()
    mail(c, "MAIL FROM:<app@devices.example>")
    assert c.handler.transactions[0].mail.auth is None


@pytest.mark.parametrize("param", ["AUTH=", "AUTH", "AUTH=bad+ZZ@corp.example", "AUTH=not-a-mailbox"])
def test_a_malformed_auth_parameter_is_a_syntax_error(param):
    c = Client()
    assert mail(c, f"MAIL FROM:<app@devices.example> {param}") == ["501 5.5.4 Invalid arguments"]
    assert c.handler.transactions == []


def test_body_binarymime_gets_555_and_7bit_8bitmime_are_taken():
    c = Client()
    assert mail(c, "MAIL FROM:<app@devices.example> BODY=BINARYMIME") == ["555 5.5.4 Unsupported parameter"]
    assert c.send("MAIL FROM:<app@devices.example> BODY=8bitmime\r\n") == ["250 2.1.0 Sender OK"]
    assert c.handler.transactions[0].mail.body == "8BITMIME"
    c.send("RSET\r\n")
    assert c.send("MAIL FROM:<app@devices.example> BODY=UTF8\r\n") == ["501 5.5.4 Invalid arguments"]


def test_help_lists_starttls_and_auth_only_where_offered(users_path):
    plain = Client()
    assert plain.send("HELP\r\n") == [
        "214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP", "214 2.0.0 End of HELP info",
    ]
    c = TLSClient(users_path)
    assert c.send("HELP\r\n")[0] == "214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS"
    c.starttls()
    assert c.send("HELP\r\n")[0] == "214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP AUTH"
    c.send("AUTH PLAIN AHNjYW5uZXIwMUBjb3JwLmV4YW1wbGUAcmlnaHQtcHc=\r\n")
    assert c.send("HELP\r\n")[0] == "214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP"


def test_mail_straight_after_starttls_is_tolerated_without_the_clear_text_helo(users_path):
    """Some devices never repeat EHLO after STARTTLS; Postfix takes their MAIL, so does this. The HELO name given in clear is forgotten."""
    c = TLSClient(users_path, connector={"auth_mechanisms": ["Tls"], "permission_groups": ["AnonymousUsers"], "require_tls": True})
    assert c.send("EHLO clear-name\r\n")[-1] == "250 HELP"
    assert c.send("STARTTLS\r\n") == ["220 2.0.0 SMTP server ready"]
    c.proto.handshakeCompleted()
    assert c.send("MAIL FROM:<printer@devices.example>\r\n") == ["250 2.1.0 Sender OK"]
    assert c.send("RCPT TO:<alice@corp.example>\r\n") == ["250 2.1.5 Recipient OK"]
    assert c.proto.session.helo is None and c.proto.session.origin().helo == ""
    # Before TLS, and on implicit TLS, HELO/EHLO is still required (Exchange's rule).
    clear = TLSClient(users_path, connector={"auth_mechanisms": ["Tls"], "permission_groups": ["AnonymousUsers"]})
    assert clear.send("MAIL FROM:<printer@devices.example>\r\n") == ["503 5.5.2 Send hello first"]
