"""gateway/smtpd/starttls.py: STARTTLS over a recording channel; what the session forgets."""

import pytest

from gateway.errors import Reply, SMTPError
from gateway.policy.rights import Principal, connector_rights
from gateway.smtpd.observer import NullObserver
from gateway.smtpd.starttls import StartTLS, forget_session_state, principal_for
from tests.smtpd.fakechannel import FakeChannel, connector, session


class Certificates:
    def options_for(self, connector):
        return "options", "certificate"


def client_frontend(**changes):
    return connector("Default Frontend", auth_mechanisms=("Tls",), **changes)


def test_pipelined_clear_text_is_thrown_away_before_the_220_and_the_handshake():
    """CVE-2011-0411: the input behind STARTTLS is discarded first, then 220, then TLS; the transaction is dropped."""
    c = client_frontend()
    s = session(c)
    s.helo = "client.example"
    channel = FakeChannel(pending_input=b"MAIL FROM:<evil@example.net>\r\n")
    tls = StartTLS(channel, s, c, NullObserver(), Certificates())
    assert tls.offered()
    assert tls.do_STARTTLS("") is None
    assert channel.calls == [("discard", 30), ("drop",), ("send", Reply.STARTTLS_READY), ("start_tls", "options")]
    assert tls.started and not tls.offered() and s.helo is None
    with pytest.raises(SMTPError) as e:
        tls.do_STARTTLS("")
    assert e.value.reply is Reply.TLS_ALREADY


def test_starttls_needs_helo_and_a_certificate_store():
    """Before EHLO: 503; on a tier without certificates: not a command at all (500)."""
    c = client_frontend()
    with pytest.raises(SMTPError) as e:
        StartTLS(FakeChannel(), session(c), c, NullObserver(), Certificates()).do_STARTTLS("")
    assert e.value.reply is Reply.NEED_HELO
    with pytest.raises(SMTPError) as e:
        StartTLS(FakeChannel(), session(c), c, NullObserver(), None).do_STARTTLS("")
    assert e.value.reply is Reply.UNRECOGNIZED


def test_what_was_won_in_clear_text_is_forgotten():
    """RFC 3207 4.2: HELO, XFORWARD, the AUTH identity and its rights go; the connector's own principal comes back."""
    c = connector("Default Frontend")
    s = session(c, Principal.AUTHENTICATED)
    s.helo, s.esmtp, s.xforward, s.identity, s.auth_mechanism, s.node = "x", True, {"ADDR": "1.2.3.4"}, object(), "PLAIN", "FE1"
    forget_session_state(s, c)
    assert (s.helo, s.esmtp, s.xforward, s.identity, s.auth_mechanism, s.node) == (None, False, {}, None, "", "")
    assert s.principal is Principal.ANONYMOUS and s.rights == connector_rights(c, Principal.ANONYMOUS)


def test_an_externally_secured_connector_makes_its_clients_externally_secured():
    """ExternalAuthoritative: no AUTH needed; otherwise a client starts anonymous."""
    assert principal_for(connector("Default Frontend")) is Principal.ANONYMOUS
    secured = connector("Default Frontend", auth_mechanisms=("ExternalAuthoritative",))
    assert principal_for(secured) is Principal.EXTERNALLY_SECURED
