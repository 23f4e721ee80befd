"""
A fake OAuth 2.0 token endpoint over HTTPS (a certificate from a test CA),
shaped like Microsoft's: POST /<tenant>/oauth2/v2.0/token with the
client-credentials grant. Threads, loopback only, stopped by `stop()`.

`tokens` are handed out in order (the last one again when they run out);
`revoked` answers 400 invalid_client with an AADSTS description, as Entra
ID does for a deleted or expired secret. Every request's form is kept.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import urllib.parse

REVOKED = {
    "error": "invalid_client",
    "error_description": "AADSTS7000222: The provided client secret keys for app '11111111-2222-3333-4444-555555555555' are expired.\r\n"
                         "Trace ID: 0f1e2d3c Correlation ID: 9a8b7c6d Timestamp: 2026-12-02 08:00:00Z",
    "error_codes": [7000222],
}


class TokenServer:
    def __init__(self, cert_file, tokens=("token-1",), client_id="11111111-2222-3333-4444-555555555555", secret="s3cr3t-value",
                 lifetime=3599, revoked=False) -> None:
        self.tokens = list(tokens)
        self.client_id = client_id
        self.secret = secret
        self.lifetime = lifetime
        self.revoked = revoked
        self.requests: list[dict] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                form["_path"] = self.path
                server.requests.append(form)
                status, body = server.answer(form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = f"https://localhost:{self.port}/contoso.onmicrosoft.com/oauth2/v2.0/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, form: dict):
        if self.revoked or form.get("client_id") != self.client_id or form.get("client_secret") != self.secret:
            return 401 if not self.revoked else 400, REVOKED
        if form.get("grant_type") != "client_credentials" or form.get("scope") != "https://outlook.office365.com/.default":
            return 400, {"error": "invalid_request", "error_description": "bad grant or scope"}
        token = self.tokens.pop(0) if len(self.tokens) > 1 else self.tokens[0]
        return 200, {"token_type": "Bearer", "expires_in": self.lifetime, "ext_expires_in": self.lifetime, "access_token": token}

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
