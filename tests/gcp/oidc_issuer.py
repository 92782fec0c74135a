"""A local OIDC issuer: an RSA key generated here, its certificate map served on loopback."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

from tests.conftest import free_port

GOOGLE_ISSUER = "https://accounts.google.com"


def _pem_private(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class OidcIssuer:
    """Mints Google-shaped ID tokens with a test key and serves ``{kid: PEM}`` at ``certs_url``."""

    def __init__(self) -> None:
        self._published: dict[str, str] = {}
        self.rotate()
        self.fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=3600")
                self.end_headers()
                self.wfile.write(issuer._certs)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.certs_url = f"http://127.0.0.1:{self._server.server_address[1]}/oauth2/v1/certs"
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-issuer", daemon=True)
        self._thread.start()

    def rotate(self) -> None:
        """Sign with a new key from now on; the certificate map publishes the old ones too."""
        self.key_id = uuid.uuid4().hex
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = self._key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        self._published[self.key_id] = public.decode()
        self._certs = json.dumps(self._published).encode()

    def claims(self, audience: str, email: str, *, lifetime: float = 3600,
               issuer: str = GOOGLE_ISSUER, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": issuer, "aud": audience, "azp": "1234567890", "sub": "1234567890",
                  "email": email, "email_verified": True, "iat": now, "exp": int(now + lifetime)}
        claims.update(extra)
        return claims

    def token(self, audience: str, email: str, *, lifetime: float = 3600,
              issuer: str = GOOGLE_ISSUER, **extra: Any) -> str:
        """A token signed by this issuer's key."""
        signer = crypt.RSASigner.from_string(_pem_private(self._key), key_id=self.key_id)
        token: bytes = jwt.encode(signer, self.claims(audience, email, lifetime=lifetime, issuer=issuer,
                                                      **extra))
        return token.decode()

    def forged_token(self, audience: str, email: str) -> str:
        """A token naming this issuer's key id, signed by another key."""
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        signer = crypt.RSASigner.from_string(_pem_private(other), key_id=self.key_id)
        token: bytes = jwt.encode(signer, self.claims(audience, email))
        return token.decode()

    def unknown_key_token(self, audience: str, email: str) -> str:
        """A token naming a key id the issuer never published (a fresh one each call)."""
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        signer = crypt.RSASigner.from_string(_pem_private(other), key_id=uuid.uuid4().hex)
        token: bytes = jwt.encode(signer, self.claims(audience, email))
        return token.decode()

    def unsigned_token(self, audience: str, email: str) -> str:
        """A token with ``alg: none`` and no signature."""
        def part(obj: Any) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(self.claims(audience, email))}."

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
