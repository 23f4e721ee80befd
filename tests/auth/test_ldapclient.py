"""SecureLDAPClient over StringTransport: StartTLS fires only after the handshake, and refuses bytes behind the response."""

from ldaptor.protocols import pureldap
from twisted.internet.testing import StringTransport

from gateway.auth.ldapclient import SecureLDAPClient, StartTLSRefused


class TLSTransport(StringTransport):
    tls = None

    def startTLS(self, options):
        self.tls = options


def started():
    client = SecureLDAPClient()
    transport = TLSTransport()
    client.makeConnection(transport)
    outcome = []
    client.start_tls("options").addBoth(outcome.append)
    request = transport.value()
    assert pureldap.LDAPStartTLSRequest.oid in request
    message_id = request[4]  # 30 len 02 01 <id>: ldaptor's short-form ids in a fresh process start small
    return client, transport, outcome, message_id


def response(message_id, value) -> bytes:
    return pureldap.LDAPMessage(value, id=message_id).toWire()


def test_start_tls_fires_after_the_handshake_not_at_the_response():
    """The bind may only follow a completed handshake (certificate checked), not the StartTLS response."""
    client, transport, outcome, mid = started()
    client.dataReceived(response(mid, pureldap.LDAPExtendedResponse(resultCode=0, responseName=pureldap.LDAPStartTLSResponse.oid)))
    assert transport.tls == "options" and outcome == []
    client.handshakeCompleted()
    assert outcome == [client]


def test_bytes_behind_the_response_refuse_the_connection():
    client, transport, outcome, mid = started()
    forged = response(mid + 1, pureldap.LDAPBindResponse(resultCode=0))
    client.dataReceived(response(mid, pureldap.LDAPExtendedResponse(resultCode=0)) + forged)
    assert transport.tls is None and transport.disconnecting
    assert outcome[0].check(StartTLSRefused)
    assert str(outcome[0].value) == f"{len(forged)} bytes came after the StartTLS response, before the TLS handshake"
    # Whatever else arrives is not decoded.
    client.dataReceived(forged)
    assert client.onwire == {}


def test_a_refused_start_tls_and_a_failed_handshake_are_temporary_failures():
    client, transport, outcome, mid = started()
    client.dataReceived(response(mid, pureldap.LDAPExtendedResponse(resultCode=2, errorMessage="no")))
    assert outcome[0].check(StartTLSRefused) and transport.tls is None
    client, transport, outcome, mid = started()
    client.dataReceived(response(mid, pureldap.LDAPExtendedResponse(resultCode=0)))
    from twisted.python.failure import Failure

    client.connectionLost(Failure(ConnectionError("certificate verify failed")))
    assert outcome[0].check(StartTLSRefused) and "certificate verify failed" in str(outcome[0].value)
    late = []
    client.secure().addErrback(late.append)
    assert late[0].check(StartTLSRefused)
