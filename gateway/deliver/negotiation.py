"""
What an outbound SMTP connection does between the greeting and its first
transaction: EHLO (HELO if refused), STARTTLS as the connector's TLS
setting says, the node login a hub asks of other gateway nodes
(gateway/auth/node.py), and AUTH to a smart host (PLAIN/LOGIN, or an OAuth
token: gateway/deliver/saslclient.py). The connection's `ready` fires when
it may send MAIL, or fails with an SMTPClientError whose reply says why.

A mixin of SMTPClient (gateway/deliver/client.py), which holds the wire:
commands, replies and the transport.
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from gateway.auth import node as node_auth
from gateway.config.values import HostPort
from gateway.deliver.oauth import TokenError
from gateway.deliver.opportunistic import OpportunisticTLSFailed
from gateway.deliver.replies import LoginUnavailable, ReplyReader, SMTPClientError
from gateway.deliver.saslclient import OAuthLogin
from gateway.errors import SMTPReply
from gateway.logs.sendlog import masked_auth


class Negotiation:
    # Held by SMTPClient; named here for the type checker.
    security: Any
    peer_name: str
    helo_name: str
    extensions: dict[str, str]
    tls_active: bool
    tls_pending: bool
    authenticated: bool
    node_authenticated: bool
    address: HostPort | None
    ready: Deferred[Any]
    replies: ReplyReader

    def command(self, line: str) -> Deferred[Any]:
        raise NotImplementedError

    def secret_command(self, line: str, shown: str) -> Deferred[Any]:
        raise NotImplementedError

    def start_tls(self, options: Any) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def _greeted(self, reply: SMTPReply) -> Deferred[Any]:
        if reply.code != 220:
            raise SMTPClientError(reply)
        return self.command(f"EHLO {self.helo_name}").addCallback(self._ehlo_done)

    def _ehlo_done(self, reply: SMTPReply) -> Deferred[Any] | None:
        # A reply inside TLS: the handshake worked.
        self.tls_pending = False
        if reply.code != 250:
            if self.security is not None and self.security.tls == "required":
                raise SMTPClientError(SMTPReply(451, "4.7.5", f"TLS required, but {self.peer_name} does not speak ESMTP"))
            # HELO offers no extensions, whatever an earlier EHLO (before STARTTLS) said.
            self.extensions = {}
            return self.command(f"HELO {self.helo_name}").addCallback(self._helo_done)
        self.extensions = {}
        for line in reply.text.split("\n")[1:]:
            keyword, _, params = line.partition(" ")
            self.extensions[keyword.upper()] = params
        security = self.security
        if security is not None and not self.tls_active and security.tls != "none":
            if "STARTTLS" in self.extensions:
                return self.command("STARTTLS").addCallback(self._starttls)
            if security.tls == "required":
                raise SMTPClientError(SMTPReply(451, "4.7.5", f"TLS required, but {self.peer_name} does not offer STARTTLS"))
        if security is not None and security.node is not None and not self.node_authenticated and node_auth.offered(self.extensions):
            return self._node_authenticate(security.node)
        if security is not None and security.auth != "None" and not self.authenticated:
            return self._authenticate()
        self.ready.callback(self)
        return None

    def _node_authenticate(self, node: node_auth.NodeCredential) -> Deferred[Any]:
        """A hub that asks gateway nodes to prove the node secret (gateway/auth/node.py): answer its challenge."""
        d = self.command("AUTH " + node_auth.MECHANISM)

        def challenged(reply: SMTPReply) -> Deferred[Any]:
            if reply.code != 334:
                raise SMTPClientError(SMTPReply(451, "4.7.5", f"{self.peer_name} refused node authentication: {reply}"))
            try:
                challenge = base64.b64decode(reply.text.strip(), validate=True).decode("utf-8")
            except ValueError:
                raise SMTPClientError(SMTPReply(451, "4.7.5", f"{self.peer_name} sent a garbled node challenge")) from None
            return self.secret_command(base64.b64encode(node.proof(challenge).encode()).decode(), "****")

        def answered(reply: SMTPReply) -> Deferred[Any]:
            if reply.code != 235:
                raise SMTPClientError(SMTPReply(
                    451, "4.7.5", f"{self.peer_name} refused this node's credential ({reply}): every node needs the same {node.path}",
                ))
            self.node_authenticated = True
            # Again, for what the hub grants a node (XFORWARD).
            return self.command(f"EHLO {self.helo_name}").addCallback(self._ehlo_done)

        return d.addCallback(challenged).addCallback(answered)

    def _starttls(self, reply: SMTPReply) -> Deferred[Any] | None:
        if reply.code != 220:
            if self.security.tls == "required":
                raise SMTPClientError(SMTPReply(451, "4.7.5", f"TLS required, but {self.peer_name} refused STARTTLS: {reply}"))
            return self._after_tls_refused()
        held = self.replies.held()
        if held:
            # Replies that came behind the 220 in clear text, before any
            # handshake, are a man in the middle's (the CVE-2011-0411 class,
            # from the server's side): they would answer the EHLO and MAIL
            # sent inside TLS. The server side throws such bytes away; here
            # the whole connection is refused, so nothing read in clear can
            # be mistaken for a reply, and the message waits for a clean one.
            self.replies.clear()
            raise SMTPClientError(SMTPReply(
                451, "4.7.5", f"TLS negotiation with {self.peer_name} failed: {held} bytes came after the 220 to STARTTLS, before the handshake",
            ))
        self.start_tls(self.security.tls_options(self.peer_name))
        self.tls_active = True
        self.tls_pending = True
        return self.command(f"EHLO {self.helo_name}").addCallback(self._ehlo_done)

    def _after_tls_refused(self) -> Deferred[Any] | None:
        """Opportunistic TLS that the server refused: go on in clear, as without STARTTLS."""
        if self.security.auth != "None" and not self.authenticated:
            return self._authenticate()
        self.ready.callback(self)
        return None

    def _authenticate(self) -> Deferred[Any]:
        security = self.security
        if security.tokens is not None:
            return self._authenticate_oauth(security)
        if not self.tls_active and security.auth == "BasicAuthRequireTLS":
            raise SMTPClientError(SMTPReply(451, "4.7.5", f"smart host AUTH needs TLS, and the session with {self.peer_name} has none"))
        line = security.auth_line(self.extensions.get("AUTH", ""))
        if line is None:
            raise SMTPClientError(SMTPReply(451, "4.7.5", f"{self.peer_name} offers no AUTH PLAIN or LOGIN"))
        d = self.secret_command(line, masked_auth(line))
        if line == "AUTH LOGIN":
            d.addCallback(self._login_step, security.username)
            d.addCallback(self._login_step, security.password)
        return d.addCallback(self._auth_done)

    def _authenticate_oauth(self, security: Any) -> Deferred[Any]:
        """XOAUTH2 / OAUTHBEARER with the connector's token (gateway/deliver/saslclient.py): only inside TLS."""
        if not self.tls_active:
            raise SMTPClientError(SMTPReply(451, "4.7.5", f"{security.auth} needs TLS, and the session with {self.peer_name} has none"))
        if security.auth not in self.extensions.get("AUTH", "").upper().split():
            raise SMTPClientError(SMTPReply(451, "4.7.5", f"{self.peer_name} does not offer AUTH {security.auth}"))
        port = self.address.port if self.address is not None else 0
        d: Deferred[Any] = OAuthLogin(self.secret_command, security.tokens, security.auth, security.username, self.peer_name, port).run()
        d.addErrback(self._no_token)
        return d.addCallback(self._oauth_done)

    def _no_token(self, failure: Failure) -> None:
        failure.trap(TokenError)
        raise LoginUnavailable(SMTPReply(451, "4.7.5", f"no OAuth token for {self.peer_name}: {failure.getErrorMessage()}"))

    def _oauth_done(self, reply: SMTPReply) -> None:
        if reply.code != 235:
            raise LoginUnavailable(SMTPReply(451, "4.7.5", f"smart host AUTH refused by {self.peer_name}: {reply}"))
        self.authenticated = True
        self.ready.callback(self)

    def _login_step(self, reply: SMTPReply, value: str) -> Deferred[Any]:
        if reply.code != 334:
            return succeed(reply)
        return self.secret_command(base64.b64encode(value.encode()).decode(), "****")

    def _auth_done(self, reply: SMTPReply) -> None:
        if reply.code != 235:
            # Wrong credentials are the admin's to fix: defer (4xx) rather than bounce the mail.
            raise SMTPClientError(SMTPReply(451, "4.7.5", f"smart host AUTH refused by {self.peer_name}: {reply}"))
        self.authenticated = True
        self.ready.callback(self)

    def _helo_done(self, reply: SMTPReply) -> None:
        if reply.code != 250:
            raise SMTPClientError(reply)
        self.ready.callback(self)

    def _not_ready(self, failure: Failure) -> None:
        if self.tls_pending and self.security.tls == "opportunistic" and not failure.check(SMTPClientError):
            failure = Failure(OpportunisticTLSFailed(f"TLS with {self.peer_name} failed: {failure.getErrorMessage()}"))
        if not self.ready.called:
            self.ready.errback(failure)
        self.abort()
