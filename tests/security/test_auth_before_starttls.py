"""
Issue 16 item 9 (RFC 3207 4.2): an AUTH identity won in clear text does not
survive STARTTLS. A man in the middle who authenticated (or a client whose
clear-text session was hijacked) must not hand an authenticated session to
whoever continues inside TLS.
"""

from tests.smtpd.test_tls_auth import Client, b64, users_path  # noqa: F401 (fixture)

CLEAR_AUTH = {"auth_mechanisms": ["Tls", "BasicAuth"], "require_tls": False}


def test_starttls_forgets_the_identity_and_rights_won_in_clear(users_path):
    c = Client(users_path, CLEAR_AUTH)
    assert c.send("EHLO dev\r\n")[-1] == "250 HELP"
    assert c.send(f"AUTH PLAIN {b64(chr(0) + 'scanner01@corp.example' + chr(0) + 'right-pw')}\r\n") == [
        "235 2.7.0 Authentication successful"
    ]
    assert c.send("STARTTLS\r\n") == ["220 2.0.0 SMTP server ready"]
    c.proto.handshakeCompleted()
    after = c.send("EHLO dev\r\n")
    assert "250-AUTH PLAIN LOGIN" in after
    assert c.send("MAIL FROM:<scanner01@corp.example>\r\n") == [
        "530 5.7.57 SMTP; Client was not authenticated to send anonymous mail during MAIL FROM"
    ]
    assert c.proto.session.identity is None and c.proto.session.proto == "ESMTPS"
    # Inside TLS the client may prove itself again.
    assert c.send(f"AUTH PLAIN {b64(chr(0) + 'scanner01@corp.example' + chr(0) + 'right-pw')}\r\n") == [
        "235 2.7.0 Authentication successful"
    ]
    assert c.send("MAIL FROM:<scanner01@corp.example>\r\n") == ["250 2.1.0 Sender OK"]
