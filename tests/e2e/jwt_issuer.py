"""The authorization server's part in JWT mode, for tests: an RSA signing key, its JWKS served over
HTTP on loopback, and tokens for any subject. PyJWT and cryptography come with the `mcp` package."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://issuer.e2e.test"
AUDIENCE = "https://dynamic-mcp.e2e.test/mcp"
ADMIN_SCOPE = "mcp:admin"  # the frontend's default MCP_AUTH_ADMIN_SCOPE


class JwtIssuer:
    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = uuid.uuid4().hex
        public = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        body = json.dumps({"keys": [{**public, "kid": self._kid, "alg": "RS256", "use": "sig"}]}).encode()

        class ServeKeys(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), ServeKeys)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.jwks_url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"

    def settings(self) -> dict[str, str]:
        """The frontend's settings for JWT mode with this issuer."""
        return {
            "MCP_AUTH_MODE": "jwt",
            "MCP_AUTH_JWKS_URL": self.jwks_url,
            "MCP_AUTH_ISSUER": ISSUER,
            "MCP_AUTH_AUDIENCE": AUDIENCE,
        }

    def token(self, subject: str, scope: str = ADMIN_SCOPE) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "scope": scope, "iat": now, "exp": now + 600}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})

    def bearer(self, subject: str, scope: str = ADMIN_SCOPE) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(subject, scope)}"}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
