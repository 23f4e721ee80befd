"""XOAUTH2 and OAUTHBEARER on the wire (gateway/deliver/saslclient.py), driven over StringTransport."""

import base64

from twisted.internet.defer import fail, succeed

from gateway.deliver.oauth import TokenError
from gateway.deliver.saslclient import decode_challenge, initial_response
from gateway.deliver.security import OutboundSecurity
from tests.deliver.test_client import _client, _said

GOOGLE_ERROR = base64.b64encode(b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}')


def test_initial_responses_are_the_documented_strings():
    assert base64.b64decode(initial_response("XOAUTH2", "relay@corp.example", "ya29.tok")) == (
        b"user=relay@corp.example\x01auth=Bearer ya29.tok\x01\x01")
    assert base64.b64decode(initial_response("OAUTHBEARER", "a,b=c@corp.example", "tok", "smtp.gmail.com", 587)) == (
        b"n,a=a=2Cb=3Dc@corp.example,\x01host=smtp.gmail.com\x01port=587\x01auth=Bearer tok\x01\x01")


def test_a_challenge_is_decoded_and_bounded():
    assert decode_challenge(GOOGLE_ERROR.decode()) == '{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}'
    assert decode_challenge("not base64!") == "not base64!"
    assert decode_challenge(base64.b64encode(b"\x00" * 600).decode()) == "?" * 500


class Tokens:
    def __init__(self, *tokens, error=None):
        self.tokens = list(tokens)
        self.error = error
        self.invalidated = []

    def get(self):
        if self.error:
            return fail(TokenError(self.error))
        return succeed(self.tokens[0])

    def invalidate(self, token):
        self.invalidated.append(token)
        self.tokens.pop(0)


def _to_auth(tokens, mechanism="XOAUTH2"):
    security = OutboundSecurity("required", auth=mechanism, username="relay@corp.example", tokens=tokens)
    client, t, outcome = _client(security)
    client.dataReceived(b"220 relay ESMTP\r\n250-relay\r\n250 STARTTLS\r\n")
    assert _said(t) == [b"EHLO out.corp.example", b"STARTTLS"]
    client.dataReceived(b"220 go ahead\r\n")
    _said(t)
    client.dataReceived(b"250-relay\r\n250 AUTH LOGIN XOAUTH2 OAUTHBEARER\r\n")
    return client, t, outcome


def test_a_good_token_authenticates():
    client, t, outcome = _to_auth(Tokens("good"))
    assert _said(t) == [b"AUTH XOAUTH2 " + initial_response("XOAUTH2", "relay@corp.example", "good").encode()]
    client.dataReceived(b"235 2.7.0 Authentication successful\r\n")
    assert outcome == [client] and client.authenticated


def test_a_refused_token_is_dropped_refetched_and_tried_once_more_on_the_same_session():
    tokens = Tokens("expired", "fresh")
    client, t, outcome = _to_auth(tokens)
    _said(t)
    client.dataReceived(b"334 " + GOOGLE_ERROR + b"\r\n")
    assert _said(t) == [b""]  # the empty answer that asks for the final reply
    client.dataReceived(b"535 5.7.8 Username and Password not accepted\r\n")
    assert tokens.invalidated == ["expired"]
    assert _said(t) == [b"AUTH XOAUTH2 " + initial_response("XOAUTH2", "relay@corp.example", "fresh").encode()]
    client.dataReceived(b"235 2.7.0 Accepted\r\n")
    assert outcome == [client]


def test_a_second_refusal_defers_with_the_decoded_error():
    tokens = Tokens("a", "b")
    client, t, outcome = _to_auth(tokens, "OAUTHBEARER")
    for _ in range(2):
        _said(t)
        client.dataReceived(b"334 " + GOOGLE_ERROR + b"\r\n")
        assert _said(t) == [b"AQ=="]
        client.dataReceived(b"535 5.7.8 Username and Password not accepted\r\n")
    assert t.value() == b"" and outcome[0].getErrorMessage() == (
        '451 4.7.5 smart host AUTH refused by relay.isp.example: 535 5.7.8 Username and Password not accepted; '
        'server said: {"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}')


def test_no_token_defers_with_the_endpoint_error_and_sends_no_auth():
    _client, t, outcome = _to_auth(Tokens(error="token endpoint https://login.example/t refused for client abc: invalid_client: revoked"))
    assert _said(t) == []
    assert outcome[0].getErrorMessage() == (
        "451 4.7.5 no OAuth token for relay.isp.example: token endpoint https://login.example/t refused for client abc: invalid_client: revoked")


def test_a_server_without_the_mechanism_or_without_tls_gets_no_token():
    security = OutboundSecurity("opportunistic", auth="XOAUTH2", username="relay@corp.example", tokens=Tokens("secret-token"))
    client, t, outcome = _client(security)
    client.dataReceived(b"220 relay ESMTP\r\n250-relay\r\n250 AUTH XOAUTH2\r\n")
    assert b"secret-token" not in t.value() and "XOAUTH2 needs TLS" in outcome[0].getErrorMessage()
    client, t, outcome = _to_auth(Tokens("secret-token"))
    client2, t2, outcome2 = _client(OutboundSecurity("required", auth="XOAUTH2", username="u", tokens=Tokens("secret-token")))
    client2.dataReceived(b"220 relay\r\n250-relay\r\n250 STARTTLS\r\n220 go\r\n")
    client2.dataReceived(b"250-relay\r\n250 AUTH PLAIN LOGIN\r\n")
    assert b"secret-token" not in t2.value() and outcome2[0].getErrorMessage() == "451 4.7.5 relay.isp.example does not offer AUTH XOAUTH2"
