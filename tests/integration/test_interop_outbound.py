"""
The hub's outbound side against next hops that are strict or old (issue 18):
real sockets on loopback, the gateway as a real process.
"""

import smtplib

import pytest

from tests.integration.capture import CaptureServer
from tests.integration.gatewayproc import Gateway, free_port
from tests.integration.test_outbound import _tls_context, relay_gateway, send


@pytest.mark.parametrize("esmtp", [True, False], ids=["ehlo-without-size", "helo-only"])
def test_a_strict_next_hop_without_size_gets_no_size_parameter(tmp_path, esmtp):
    """A next hop that answers 555 to unoffered parameters: without SIZE (or EHLO) it sees a bare MAIL FROM and gets the message."""
    hop = CaptureServer("127.0.0.1", free_port(), extensions=[b"PIPELINING"], esmtp=esmtp)
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}")
    try:
        send(gw, ["far@outside.example"], b"Subject: strict\r\n\r\nhello\r\n")
        gw.wait_until(lambda: hop.transactions and gw.queue_files() == [], what="delivery to the strict next hop")
        (txn,) = hop.transactions
        assert txn.commands == [b"MAIL FROM:<app@corp.example>", b"RCPT TO:<far@outside.example>"]
        assert txn.data.endswith(b"Subject: strict\r\n\r\nhello\r\n")
    finally:
        gw.stop()
        hop.stop()


def _tls10_only(tmp_path):
    """A server context that speaks TLS 1.0 and nothing newer, with the old ciphers such peers have."""
    import ssl
    import warnings

    context, _ = _tls_context(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def test_opportunistic_tls_takes_a_next_hop_that_has_only_tls_1_0(tmp_path):
    """Postfix's `may` level delivers to a TLS 1.0-only peer; so do we, encrypted, at once (no deferral)."""
    hop = CaptureServer("127.0.0.1", free_port(), tls_context=_tls10_only(tmp_path))
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}")
    try:
        send(gw, ["far@outside.example"], b"Subject: old tls\r\n\r\nhello\r\n")
        gw.wait_until(lambda: hop.transactions and gw.queue_files() == [], what="delivery over TLS 1.0")
        (txn,) = hop.transactions
        assert (txn.tls, txn.tls_version, txn.rcpts) == (True, "TLSv1", ["far@outside.example"])
        assert "deferred" not in gw.log()
    finally:
        gw.stop()
        hop.stop()


def test_a_failed_opportunistic_handshake_is_retried_in_clear_in_the_same_attempt(tmp_path):
    """STARTTLS answered 220 and then no TLS: a second connection without STARTTLS delivers the message, no deferral."""
    hop = CaptureServer("127.0.0.1", free_port(), broken_tls=True)
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}")
    try:
        send(gw, ["far@outside.example"], b"Subject: in clear\r\n\r\nhello\r\n")
        gw.wait_until(lambda: hop.transactions and gw.queue_files() == [], what="delivery in clear")
        (txn,) = hop.transactions
        assert (txn.tls, txn.rcpts) == (False, ["far@outside.example"])
        assert hop.tls_attempts == 1 and hop.connections == 2
        assert "retrying in clear" in gw.log() and "deferred" not in gw.log()
    finally:
        gw.stop()
        hop.stop()


def test_a_failed_handshake_never_falls_back_to_clear_when_tls_is_required(tmp_path):
    """tls = "required": the same broken handshake defers the message; nothing is sent in clear."""
    _, cert = _tls_context(tmp_path)
    hop = CaptureServer("127.0.0.1", free_port(), broken_tls=True)
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}", f"""
tls = "required"
tls_domain = "relay.isp.example"
tls_ca_file = "{cert}"
""")
    try:
        send(gw, ["far@outside.example"], b"Subject: secret\r\n\r\nnot in clear\r\n")
        gw.wait_until(lambda: "deferred" in gw.log(), what="the deferral")
        assert hop.transactions == [] and len(gw.queued()) == 1
        assert "retrying in clear" not in gw.log()
    finally:
        gw.stop()
        hop.stop()


def _mail_store(tmp_path):
    context, cert = _tls_context(tmp_path, name="mailstore.corp.example")
    return CaptureServer("127.0.0.1", free_port(), tls_context=context, auth=("exgateway", "St0re-secret"), require_tls_auth=True), cert


def test_the_mailbox_next_hop_gets_starttls_and_auth_like_a_send_connector(tmp_path):
    """A mail store that refuses MAIL outside TLS and without AUTH: local mail arrives, certificate checked, password from a file."""
    store, cert = _mail_store(tmp_path)
    gw = Gateway(tmp_path / "gw", extra=f'''[mailbox]
delivery = "smtp"
next_hop = "127.0.0.1:{store.port}"
tls = "required"
tls_domain = "mailstore.corp.example"
tls_ca_file = "{cert}"
auth_user = "exgateway"
auth_password_file = "store.password"
''')
    gw.var.mkdir(parents=True, exist_ok=True)
    (gw.var / "store.password").write_text("St0re-secret\n")
    gw.start()
    try:
        with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=10) as s:
            s.sendmail("app@devices.example", ["alice@corp.example"], b"Subject: internal\r\n\r\nnot in clear\r\n")
        gw.wait_until(lambda: store.transactions and gw.queue_files() == [], what="delivery to the mail store")
        (txn,) = store.transactions
        assert (txn.tls, txn.auth, txn.rcpts) == (True, "exgateway", ["alice@corp.example"])
        assert txn.data.endswith(b"Subject: internal\r\n\r\nnot in clear\r\n")
        assert "St0re-secret" not in gw.log()
    finally:
        gw.stop()
        store.stop()


def test_a_mailbox_next_hop_with_a_wrong_password_defers_instead_of_bouncing(tmp_path):
    """Wrong credentials are the admin's to fix: the local message waits (451 4.7.5), no NDR."""
    store, _ = _mail_store(tmp_path)
    gw = Gateway(tmp_path / "gw", extra=f'''[mailbox]
delivery = "smtp"
next_hop = "127.0.0.1:{store.port}"
auth_user = "exgateway"
auth_password = "wrong"
''').start()
    try:
        with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=10) as s:
            s.sendmail("app@devices.example", ["alice@corp.example"], b"Subject: internal\r\n\r\nhello\r\n")
        gw.wait_until(lambda: "deferred" in gw.log(), what="the deferral")
        assert "smart host AUTH refused by 127.0.0.1: 535 5.7.8 bad credentials" in gw.log()
        assert store.transactions == [] and len(gw.queued()) == 1
    finally:
        gw.stop()
        store.stop()


def _mailbox_notices(gw, address: str) -> list[bytes]:
    return [m for m in gw.mailbox(address) if b"report-type=delivery-status" in m]


def test_notify_success_gets_a_delivered_notice_for_a_local_mailbox_through_frontend_and_hub(tmp_path):
    """smtplib with RFC 3461 options on the frontend: the hub stores them and the sender's own mailbox gets a "delivered" DSN."""
    gw = Gateway(tmp_path / "gw").start()
    try:
        with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=10) as s:
            s.ehlo("app.corp.example")
            assert s.has_extn("dsn")
            s.sendmail("app@corp.example", ["alice@corp.example", "bob@corp.example"], b"Subject: report\r\n\r\nhello\r\n",
                       mail_options=["RET=HDRS", "ENVID=QQ314159"], rcpt_options=["NOTIFY=SUCCESS", "ORCPT=rfc822;alice@corp.example"])
        gw.wait_until(lambda: _mailbox_notices(gw, "app@corp.example") and gw.queue_files() == [], what="the success notice")
        (notice,) = _mailbox_notices(gw, "app@corp.example")
        assert b"Subject: Delivered: report\r\n" in notice and b"Original-Envelope-Id: QQ314159\r\n" in notice
        assert b"Original-Recipient: rfc822; alice@corp.example\r\nFinal-Recipient: rfc822; alice@corp.example\r\nAction: delivered\r\nStatus: 2.0.0\r\n" in notice
        assert b"Final-Recipient: rfc822; bob@corp.example\r\nAction: delivered\r\n" in notice
        assert gw.mailbox("alice@corp.example")[0].endswith(b"Subject: report\r\n\r\nhello\r\n")
    finally:
        gw.stop()


@pytest.mark.parametrize("dsn", [False, True], ids=["next-hop-without-dsn", "next-hop-with-dsn"])
def test_notify_success_to_a_next_hop_relayed_notice_or_parameters_passed_on(tmp_path, dsn):
    """Without DSN at the next hop: no DSN parameter goes there and the sender gets "relayed"; with it: NOTIFY/ORCPT/RET/ENVID go on, and no notice from us."""
    hop = CaptureServer("127.0.0.1", free_port(), extensions=[b"PIPELINING", b"SIZE 100000000", b"8BITMIME"] + ([b"DSN"] if dsn else []))
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}")
    try:
        with smtplib.SMTP(timeout=10, source_address=("127.0.0.2", 0)) as s:
            s.connect("127.0.0.1", gw.frontend_port)
            s.sendmail("app@corp.example", ["far@outside.example"], b"Subject: out\r\n\r\nhello\r\n",
                       mail_options=["RET=FULL", "ENVID=id+2B7"], rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Far@outside.example"])
        gw.wait_until(lambda: hop.transactions and gw.queue_files() == [], what="delivery to the next hop")
        (txn,) = hop.transactions
        if dsn:
            assert txn.commands == [
                b"MAIL FROM:<app@corp.example> SIZE=%d RET=FULL ENVID=id+2B7" % int(txn.commands[0].split(b"SIZE=")[1].split()[0]),
                b"RCPT TO:<far@outside.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Far@outside.example",
            ]
            assert _mailbox_notices(gw, "app@corp.example") == []
        else:
            assert b"NOTIFY" not in b"".join(txn.commands) and b"RET=" not in txn.commands[0]
            gw.wait_until(lambda: _mailbox_notices(gw, "app@corp.example"), what="the relayed notice")
            (notice,) = _mailbox_notices(gw, "app@corp.example")
            assert b"Subject: Relayed: out\r\n" in notice and b"Original-Envelope-Id: id+7\r\n" in notice
            assert b"Final-Recipient: rfc822; far@outside.example\r\nAction: relayed\r\nStatus: 2.0.0\r\n" in notice
    finally:
        gw.stop()
        hop.stop()


def test_notify_never_suppresses_the_non_delivery_report(tmp_path):
    """A refused recipient with NOTIFY=NEVER: failed and gone, no NDR; the other one (no NOTIFY) gets its NDR."""
    hop = CaptureServer("127.0.0.1", free_port(), rcpt_replies={
        "quiet@outside.example": b"550 5.1.1 no such user", "loud@outside.example": b"550 5.1.1 no such user",
    })
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}")
    try:
        with smtplib.SMTP(timeout=10, source_address=("127.0.0.2", 0)) as s:
            s.connect("127.0.0.1", gw.frontend_port)
            s.sendmail("app@corp.example", ["quiet@outside.example"], b"Subject: q\r\n\r\nx\r\n", rcpt_options=["NOTIFY=NEVER"])
            s.sendmail("app@corp.example", ["loud@outside.example"], b"Subject: l\r\n\r\nx\r\n")
        gw.wait_until(lambda: _mailbox_notices(gw, "app@corp.example") and gw.queue_files() == [], what="the one NDR")
        (ndr,) = _mailbox_notices(gw, "app@corp.example")
        assert b"Final-Recipient: rfc822; loud@outside.example" in ndr and b"quiet@" not in ndr
    finally:
        gw.stop()
        hop.stop()


UTF8_MESSAGE = "From: Jösé <jösé@corp.example>\r\nSubject: Grüße\r\n\r\nhallo\r\n".encode()


def test_a_utf8_envelope_and_headers_reach_a_local_mailbox_under_its_mapped_name(tmp_path):
    """smtplib with SMTPUTF8 through frontend and hub: the message lands in the percent-encoded Maildir, byte-intact."""
    gw = Gateway(tmp_path / "gw").start()
    try:
        with smtplib.SMTP("127.0.0.1", gw.frontend_port, timeout=10) as s:
            s.ehlo("app.corp.example")
            assert s.has_extn("smtputf8")
            s.sendmail("jösé@corp.example", ["Ålice@corp.example"], UTF8_MESSAGE, mail_options=["SMTPUTF8"])
        gw.wait_until(lambda: gw.queue_files() == [] and list((gw.var / "mailboxes").rglob("new/*")), what="delivery")
        (delivered,) = (gw.var / "mailboxes" / "corp.example" / "%C3%A5lice" / "new").iterdir()
        assert delivered.read_bytes().endswith(UTF8_MESSAGE)
    finally:
        gw.stop()


@pytest.mark.parametrize("smtputf8", [False, True], ids=["next-hop-without-smtputf8", "next-hop-with-smtputf8"])
def test_a_utf8_message_is_relayed_only_to_a_next_hop_with_smtputf8_and_bounced_with_5_6_7_otherwise(tmp_path, smtputf8):
    hop = CaptureServer("127.0.0.1", free_port(), extensions=[b"PIPELINING", b"8BITMIME"] + ([b"SMTPUTF8"] if smtputf8 else []))
    gw = relay_gateway(tmp_path / "gw", f"127.0.0.1:{hop.port}")
    try:
        with smtplib.SMTP(timeout=10, source_address=("127.0.0.2", 0)) as s:
            s.connect("127.0.0.1", gw.frontend_port)
            s.sendmail("app@corp.example", ["jürgen@außen.example"], UTF8_MESSAGE, mail_options=["SMTPUTF8"])
        if smtputf8:
            gw.wait_until(lambda: hop.transactions and gw.queue_files() == [], what="delivery to the next hop")
            (txn,) = hop.transactions
            assert txn.commands == [b"MAIL FROM:<app@corp.example> SMTPUTF8", "RCPT TO:<jürgen@xn--auen-wna.example>".encode()]
            assert txn.data.endswith(UTF8_MESSAGE)
        else:
            gw.wait_until(lambda: _mailbox_notices(gw, "app@corp.example") and gw.queue_files() == [], what="the NDR")
            (ndr,) = _mailbox_notices(gw, "app@corp.example")
            assert b"Status: 5.6.7\r\n" in ndr and b"does not support SMTPUTF8" in ndr
            assert hop.transactions == []
    finally:
        gw.stop()
        hop.stop()
