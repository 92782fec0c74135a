"""Who may see the dashboard, and which POSTs it believes.

- ``Auth``: a bearer token (also accepted once as ``?token=`` and then kept in a signed
  cookie, or typed into the login form) or HTTP basic auth; none on loopback by default.
- ``Csrf``: a signed double-submit token. The cookie holds a random nonce; each form
  carries ``nonce.signature`` (HMAC-SHA256 under the dashboard's secret). A POST passes
  only when the form's nonce matches the cookie's and the signature is ours, and when its
  ``Origin`` (if the browser sent one) is this host.
- ``check_bind``: refuses to serve on a non-loopback address without auth.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from .._errors import ConfigurationError

CSRF_COOKIE = "cq_csrf"
CSRF_FIELD = "csrf"
SESSION_COOKIE = "cq_session"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, *, token: str | None = None, basic_auth: tuple[str, str] | None = None) -> None:
    """Refuse a non-loopback ``host`` unless the dashboard asks for a token or a password.

    Raises:
        ConfigurationError: ``host`` is not loopback and no auth is set.
    """
    if is_loopback(host) or token or basic_auth:
        return
    raise ConfigurationError(
        f"refusing to serve the dashboard on {host} without authentication: anyone who can reach "
        "that address could redrive, purge and enqueue jobs; pass --token TOKEN (or set "
        "CLOUDQUEUE_DASHBOARD_TOKEN) or --basic-auth USER:PASSWORD, or bind 127.0.0.1")


def parse_basic_auth(text: str) -> tuple[str, str]:
    """``USER:PASSWORD`` as a pair.

    Raises:
        ConfigurationError: no colon, or an empty user or password.
    """
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ConfigurationError("basic auth must be USER:PASSWORD, both non-empty "
                                 "(e.g. --basic-auth ops:$(cat /run/secrets/dashboard))")
    return user, password


def _sign(secret: bytes, purpose: str, value: str) -> str:
    digest = hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class Auth:
    """The dashboard's authentication: a token, basic auth, or none."""

    token: str | None = None
    basic: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.token is not None and len(self.token) < 8:
            raise ConfigurationError("the dashboard token must be at least 8 characters "
                                     "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
        if self.token is not None and self.basic is not None:
            raise ConfigurationError("give the dashboard a token or basic auth, not both")

    @property
    def required(self) -> bool:
        return self.token is not None or self.basic is not None

    def session_value(self, secret: bytes) -> str:
        """The cookie that proves the token was given (changes when the token does)."""
        assert self.token is not None
        return _sign(secret, "session", hashlib.sha256(self.token.encode()).hexdigest())

    def token_matches(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def allows(self, authorization: str | None, session: str | None, secret: bytes) -> bool:
        """Whether a request with these headers is let in."""
        if not self.required:
            return True
        scheme, _, credentials = (authorization or "").partition(" ")
        if self.basic is not None:
            if scheme.lower() != "basic":
                return False
            try:
                user, _, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            expected_user, expected_password = self.basic
            # both compared, always, so the time taken says nothing about which one was wrong
            same_user = hmac.compare_digest(user.encode(), expected_user.encode())
            same_password = hmac.compare_digest(password.encode(), expected_password.encode())
            return same_user and same_password
        if scheme.lower() == "bearer" and self.token_matches(credentials.strip()):
            return True
        return session is not None and hmac.compare_digest(session, self.session_value(secret))


class Csrf:
    """Signed double-submit CSRF tokens."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(18)

    def token(self, nonce: str) -> str:
        """The form field value for the cookie's ``nonce``."""
        return f"{nonce}.{_sign(self.secret, 'csrf', nonce)}"

    def check(self, cookie: str | None, field: str | None, origin: str | None, host: str | None) -> str | None:
        """Why a POST is refused, or None when it passes."""
        if origin and origin != "null":
            origin_host = urlsplit(origin).netloc
            if host and origin_host.lower() != host.lower():
                return f"the request came from another site ({origin}); reload the dashboard and retry"
        if not field:
            return "the form has no CSRF token; reload the page and submit it again"
        nonce, _, signature = field.partition(".")
        if not cookie or not hmac.compare_digest(nonce, cookie):
            return "the CSRF token does not match this browser's cookie; reload the page and retry"
        if not hmac.compare_digest(signature, _sign(self.secret, "csrf", nonce)):
            return "the CSRF token is not signed by this dashboard; reload the page and retry"
        return None
