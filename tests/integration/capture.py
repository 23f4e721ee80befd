"""
A scriptable SMTP next hop for integration tests: it records every
transaction byte for byte (the DATA as it came on the wire, dot-stuffing and
all), answers RCPT per recipient as told, and offers STARTTLS and AUTH when
asked. Threads, loopback only, stopped by `stop()`.
"""

from __future__ import annotations

import base64
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass
class Transaction:
    helo: str = ""
    mail_from: str = ""
    rcpts: list[str] = field(default_factory=list)
    wire_data: bytes = b""
    tls: bool = False
    tls_version: str = ""
    auth: str = ""
    # The certificate the client showed in the TLS handshake (DER), if the context asked for one.
    client_certificate: bytes | None = None
    # The MAIL and RCPT command lines as they came, parameters and all.
    commands: list[bytes] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        """The message as the sender meant it: dot-stuffing undone, final dot line removed."""
        lines = self.wire_data.split(b"\r\n")
        return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


class CaptureServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, rcpt_replies: dict | None = None, greeting: bytes = b"220 capture ESMTP",
                 tls_context: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None,
                 extensions: list[bytes] | None = None, esmtp: bool = True, broken_tls: bool = False,
                 require_tls_auth: bool = False, oauth_tokens: set | None = None) -> None:
        self.transactions: list[Transaction] = []
        self.rcpt_replies = rcpt_replies or {}
        self.greeting = greeting
        self.tls_context = tls_context
        self.auth = auth
        # The EHLO keywords offered (default: PIPELINING, SIZE, 8BITMIME). A
        # MAIL or RCPT parameter of an extension not offered gets 555, as a
        # strict server answers (RFC 5321 4.1.1.11); esmtp=False refuses EHLO
        # (502) so the client must fall back to HELO, which offers nothing.
        self.extensions = extensions if extensions is not None else [b"PIPELINING", b"SIZE 100000000", b"8BITMIME"]
        self.esmtp = esmtp
        # Offer STARTTLS, answer 220, then answer the ClientHello with bytes that are no TLS and close: a handshake that fails.
        self.broken_tls = broken_tls
        self.tls_attempts = 0
        # A mail store that takes MAIL only inside TLS and after AUTH (530 otherwise), offering AUTH only inside TLS.
        self.require_tls_auth = require_tls_auth
        # XOAUTH2 / OAUTHBEARER after STARTTLS: the bearer tokens accepted (others get Google's
        # base64 JSON error in a 334, then 535); every token presented is kept in `tokens_seen`.
        self.oauth_tokens = oauth_tokens
        self.tokens_seen: list[str] = []
        self.connections = 0
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                server.connections += 1
                server._session(self.request, self.rfile, self.wfile)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            # socketserver's default backlog of 5 stalls a gateway that opens many connections at once.
            request_queue_size = 128

        self.server = Server((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # Which extension each MAIL/RCPT parameter belongs to.
    PARAMETER_EXTENSION: ClassVar[dict[bytes, bytes]] = {
        b"SIZE": b"SIZE", b"BODY": b"8BITMIME", b"SMTPUTF8": b"SMTPUTF8", b"RET": b"DSN",
        b"ENVID": b"DSN", b"NOTIFY": b"DSN", b"ORCPT": b"DSN", b"AUTH": b"AUTH",
    }

    def _unoffered(self, cmd: bytes, offered: set) -> bytes:
        """The first parameter of cmd whose extension was not offered (b"" if none)."""
        path_end = cmd.find(b">")
        for param in cmd[path_end + 1 :].split():
            key = param.split(b"=")[0].upper()
            if self.PARAMETER_EXTENSION.get(key, key) not in offered:
                return key
        return b""

    OAUTH_ERROR = base64.b64encode(b'{"status":"401","schemes":"bearer","scope":"https://outlook.office365.com/.default"}')

    def _oauth(self, cmd: bytes, rfile, send) -> str:
        """One XOAUTH2 / OAUTHBEARER exchange; the user on success, "" otherwise."""
        parts = cmd.split()
        if len(parts) != 3 or parts[1].upper() not in (b"XOAUTH2", b"OAUTHBEARER"):
            send(b"504 5.7.4 Unrecognized authentication type")
            return ""
        fields = base64.b64decode(parts[2]).decode().split("\x01")
        user = next((f[5:] for f in fields if f.startswith("user=")), "")
        if fields[0].startswith("n,a="):
            user = fields[0][4:].rstrip(",")
        token = next((f[len("auth=Bearer "):] for f in fields if f.startswith("auth=Bearer ")), "")
        self.tokens_seen.append(token)
        if token in self.oauth_tokens:
            send(b"235 2.7.0 Authentication successful")
            return user
        send(b"334 " + self.OAUTH_ERROR)
        rfile.readline()
        send(b"535 5.7.3 Authentication unsuccessful")
        return ""

    def _session(self, sock, rfile, wfile) -> None:
        def send(line: bytes) -> None:
            wfile.write(line + b"\r\n")
            wfile.flush()

        send(self.greeting)
        if not self.greeting.startswith(b"220"):
            return
        txn, tls, user, offered, peer = None, False, "", set(), None
        while True:
            line = rfile.readline()
            if not line:
                return
            cmd = line.rstrip(b"\r\n")
            verb = cmd.split(b" ", 1)[0].upper()
            if verb == b"EHLO" and not self.esmtp:
                send(b"502 5.5.1 EHLO not implemented")
            elif verb == b"HELO":
                offered = set()
                send(b"250 capture")
                helo = cmd[5:].decode()
            elif verb == b"EHLO":
                ext = [b"250-capture"] + [b"250-" + x for x in self.extensions]
                offered = {x.split()[0].upper() for x in self.extensions}
                if (self.tls_context is not None or self.broken_tls) and not tls:
                    ext.append(b"250-STARTTLS")
                if self.auth is not None and (tls or not self.require_tls_auth):
                    ext.append(b"250-AUTH PLAIN LOGIN")
                    offered.add(b"AUTH")
                if self.oauth_tokens is not None and tls:
                    ext.append(b"250-AUTH XOAUTH2 OAUTHBEARER")
                    offered.add(b"AUTH")
                for x in ext:
                    send(x)
                send(b"250 HELP")
                helo = cmd[5:].decode()
            elif verb == b"STARTTLS":
                self.tls_attempts += 1
                send(b"220 2.0.0 go ahead")
                if self.broken_tls:
                    # Answer the ClientHello (not before it: bytes right behind
                    # the 220 are an injection the client refuses outright).
                    sock.recv(16384)
                    send(b"this is not a TLS server hello")
                    return
                sock = self.tls_context.wrap_socket(sock, server_side=True)
                rfile, wfile = sock.makefile("rb"), sock.makefile("wb")
                tls = True
                peer = sock.getpeercert(binary_form=True)
            elif verb == b"AUTH" and self.oauth_tokens is not None:
                user = self._oauth(cmd, rfile, send) or user
            elif verb == b"AUTH":
                parts = cmd.split()
                if len(parts) == 3 and parts[1].upper() == b"PLAIN":
                    _, u, p = base64.b64decode(parts[2]).split(b"\0")
                else:
                    send(b"535 5.7.8 only PLAIN with an initial response here")
                    continue
                if self.auth == (u.decode(), p.decode()):
                    user = u.decode()
                    send(b"235 2.7.0 ok")
                else:
                    send(b"535 5.7.8 bad credentials")
            elif verb == b"MAIL" and self.require_tls_auth and not tls:
                send(b"530 5.7.0 Must issue a STARTTLS command first")
            elif verb == b"MAIL" and self.require_tls_auth and not user:
                send(b"530 5.7.0 Authentication required")
            elif verb in (b"MAIL", b"RCPT") and self._unoffered(cmd, offered):
                send(b"555 5.5.4 " + self._unoffered(cmd, offered) + b" parameter not recognized")
            elif verb == b"MAIL":
                txn = Transaction(helo=helo, mail_from=cmd[10:].split(b">")[0].lstrip(b"<").decode(), tls=tls, auth=user,
                                  tls_version=sock.version() if tls else "", client_certificate=peer)
                txn.commands.append(cmd)
                send(b"250 2.1.0 ok")
            elif verb == b"RCPT":
                txn.commands.append(cmd)
                rcpt = cmd[8:].split(b">")[0].lstrip(b"<").decode()
                reply = self.rcpt_replies.get(rcpt, b"250 2.1.5 ok")
                if reply.startswith(b"250"):
                    txn.rcpts.append(rcpt)
                send(reply)
            elif verb == b"DATA":
                if txn is None or not txn.rcpts:
                    send(b"554 5.5.1 no valid recipients")
                    continue
                send(b"354 go ahead")
                chunks = []
                while True:
                    chunk = rfile.readline()
                    if not chunk:
                        return
                    if chunk == b".\r\n":
                        break
                    chunks.append(chunk)
                txn.wire_data = b"".join(chunks)
                self.transactions.append(txn)
                send(b"250 2.0.0 queued as %d" % len(self.transactions))
                txn = None
            elif verb == b"RSET":
                txn = None
                send(b"250 2.0.0 ok")
            elif verb == b"QUIT":
                send(b"221 2.0.0 bye")
                return
            else:
                send(b"502 5.5.2 not here")
