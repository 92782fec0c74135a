"""Verify the OIDC bearer token Cloud Tasks and Pub/Sub push send, with google-auth.

The token's signature (against Google's published certificates, cached), issuer,
audience, expiry, not-before and the service-account email are all checked; anything
else is refused before a job runs.

Forged tokens cannot slow valid ones down: the certificates are read without a lock while
they are fresh; a token naming an unknown key id triggers at most one refetch per
``min_refetch`` interval (and that key id is then refused from a negative cache until the
interval has passed); a token whose signature fails against a known key never triggers a
refetch; while one thread refetches, the others keep using the certificates they have.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from ._common import INSTALL_HINT

log = logging.getLogger("cloudqueue.gcp")

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
_DEFAULT_CERTS_TTL = 300.0
#: the shortest time between two certificate fetches caused by unknown key ids
DEFAULT_MIN_REFETCH = timedelta(seconds=60)
#: unknown key ids remembered at once (the oldest are forgotten first)
_NEGATIVE_LIMIT = 1024


class AuthError(Exception):
    """A push request whose token is refused; ``status`` is 401 (who?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PushAuth:
    """What a push request's OIDC token must say (a plain class: it is built on a cold start).

    Args:
        audiences: accepted ``aud`` values (the function's URL, or the audience set on the
            queue / push subscription).
        service_accounts: accepted ``email`` values (the invoker service account).
        issuers: accepted ``iss`` values.
        certs_url: where the signing certificates are published (a JSON map of key id to
            PEM certificate, as Google's v1 endpoint serves them).
        clock_skew: leeway for ``iat``, ``nbf`` and ``exp``.
        min_refetch: the shortest time between two refetches of the certificates caused
            by a token naming a key id they do not hold.
    """

    __slots__ = ("_certs", "audiences", "certs_url", "clock_skew", "issuers", "service_accounts")

    def __init__(self, audiences: frozenset[str], service_accounts: frozenset[str], *,
                 issuers: tuple[str, ...] = GOOGLE_ISSUERS, certs_url: str = GOOGLE_CERTS_URL,
                 clock_skew: timedelta = timedelta(seconds=10),
                 min_refetch: timedelta = DEFAULT_MIN_REFETCH) -> None:
        self.audiences = audiences
        self.service_accounts = service_accounts
        self.issuers = issuers
        self.certs_url = certs_url
        self.clock_skew = clock_skew
        self._certs = _CertCache(certs_url, min_refetch.total_seconds())

    def __repr__(self) -> str:
        return (f"PushAuth(audiences={sorted(self.audiences)}, "
                f"service_accounts={sorted(self.service_accounts)}, certs_url={self.certs_url!r})")

    @classmethod
    def of(cls, audience: str | Iterable[str], service_account: str | Iterable[str],
           **options: Any) -> PushAuth:
        audiences = frozenset([audience] if isinstance(audience, str) else audience)
        accounts = frozenset([service_account] if isinstance(service_account, str) else service_account)
        return cls(audiences=audiences, service_accounts=accounts, **options)

    def verify(self, authorization: str | None) -> Mapping[str, Any]:
        """Check an ``Authorization`` header; return the token's claims.

        Raises:
            AuthError: 401 for a missing, malformed, unsigned, badly signed, expired token or
                a wrong issuer or audience; 403 for a valid token of another account.
        """
        if not authorization:
            raise AuthError(401, "no Authorization header: push requests must carry an OIDC token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "the Authorization header is not 'Bearer <token>'")
        try:
            from google.auth import exceptions as gexc
            from google.auth import jwt as _jwt
        except ImportError as exc:  # pragma: no cover - google-auth is a dependency
            raise AuthError(401, f"google-auth is not installed; {INSTALL_HINT}") from exc
        jwt: Any = _jwt
        token = token.strip()
        try:
            header = jwt.decode_header(token)
        except (ValueError, gexc.GoogleAuthError) as exc:
            raise AuthError(401, f"the bearer token is not a JWT: {exc}") from None
        if header.get("alg") != "RS256":
            raise AuthError(401, f"the bearer token is signed with {header.get('alg')!r}, not RS256")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthError(401, "the bearer token's key id is not a string")
        certs = self._certs.for_key(kid)
        if certs is None:
            raise AuthError(401, f"the bearer token names key id {kid!r}, which is not published")
        claims = self._decode(jwt, gexc, token, certs)
        if claims is None:  # keys are never re-signed under the same id: no refetch helps
            raise AuthError(401, "the bearer token's signature does not match any published key")
        self._check_not_before(claims)
        if claims.get("iss") not in self.issuers:
            raise AuthError(401, f"the bearer token's issuer {claims.get('iss')!r} is not accepted")
        email = claims.get("email")
        if email not in self.service_accounts or claims.get("email_verified") not in (True, "true"):
            raise AuthError(403, f"the bearer token belongs to {email!r}, which may not push here")
        return claims

    def _check_not_before(self, claims: Mapping[str, Any]) -> None:
        """google-auth checks ``iat`` and ``exp`` but not ``nbf``: a token is refused before it."""
        if "nbf" not in claims:
            return
        nbf = claims["nbf"]
        if isinstance(nbf, bool) or not isinstance(nbf, (int, float)):
            raise AuthError(401, f"the bearer token's nbf {nbf!r} is not a number")
        if nbf > time.time() + self.clock_skew.total_seconds():
            raise AuthError(401, f"the bearer token is not valid before {int(nbf)} (nbf); it is "
                                 f"{int(time.time())} now")

    def _decode(self, jwt: Any, gexc: Any, token: str, certs: Mapping[str, str]) -> dict[str, Any] | None:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, certs=dict(certs), audience=list(self.audiences),
                clock_skew_in_seconds=int(self.clock_skew.total_seconds()))
            return claims
        except (ValueError, gexc.GoogleAuthError) as exc:
            text = str(exc)
            if "signature" in text.lower() or "certificate for key id" in text.lower():
                return None
            raise AuthError(401, f"the bearer token is refused: {text}") from None


class _CertCache:
    """Signing certificates, fetched on first use and kept for their Cache-Control max-age.

    Reads take no lock while the certificates are fresh. One thread fetches at a time;
    the others keep the certificates they have (or, on the very first fetch, wait for it).
    """

    def __init__(self, url: str, min_refetch: float = DEFAULT_MIN_REFETCH.total_seconds()) -> None:
        self.url = url
        self.min_refetch = min_refetch
        self._lock = threading.Lock()
        self._certs: dict[str, str] = {}
        self._expires = 0.0
        self._fetched_at = float("-inf")
        self._unknown: dict[str, float] = {}  # key id -> monotonic time it may be looked for again

    def current(self) -> dict[str, str]:
        """The certificates, refetched when their max-age has passed."""
        certs = self._certs
        if certs and time.monotonic() < self._expires:
            return certs
        if certs and not self._lock.acquire(blocking=False):
            return certs  # another thread is refreshing: the old ones serve meanwhile
        if not certs:
            self._lock.acquire()
        try:
            if not self._certs or time.monotonic() >= self._expires:
                self._fetch()
            return self._certs
        finally:
            self._lock.release()

    def for_key(self, kid: str | None) -> dict[str, str] | None:
        """The certificates if they hold ``kid`` (or no kid was named), else None.

        An unknown key id refetches at most once per ``min_refetch`` and is then refused
        from a negative cache, so forged tokens cannot make every request fetch.
        """
        certs = self.current()
        if kid is None or kid in certs:
            return certs
        now = time.monotonic()
        if self._unknown.get(kid, 0.0) > now or now - self._fetched_at < self.min_refetch:
            self._remember_unknown(kid, now)
            return None
        if not self._lock.acquire(blocking=False):
            return None  # a refetch is under way; a valid new key is tried on the next request
        try:
            if time.monotonic() - self._fetched_at >= self.min_refetch:
                self._fetch()
        finally:
            self._lock.release()
        certs = self._certs
        if kid in certs:
            return certs
        self._remember_unknown(kid, time.monotonic())
        return None

    def _remember_unknown(self, kid: str, now: float) -> None:
        unknown = self._unknown
        if kid not in unknown:
            unknown[kid] = now + self.min_refetch
            while len(unknown) > _NEGATIVE_LIMIT:
                unknown.pop(next(iter(unknown)), None)

    def _fetch(self) -> None:
        import urllib.request  # only when a token is checked: it costs ~15 ms to import

        self._fetched_at = time.monotonic()
        try:
            with urllib.request.urlopen(self.url, timeout=10) as response:
                data = json.loads(response.read())
                max_age = _max_age(response.headers.get("Cache-Control", ""))
        except (OSError, ValueError) as exc:
            if self._certs:
                log.warning("could not refresh OIDC certificates from %s (%s); keeping the old ones",
                            self.url, exc)
                self._expires = time.monotonic() + self.min_refetch  # not one attempt per request
                return
            raise AuthError(401, f"could not fetch OIDC certificates from {self.url}: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise AuthError(401, f"{self.url} did not return a map of key id to PEM certificate")
        self._certs = data
        self._unknown = {}
        self._expires = time.monotonic() + (max_age if max_age is not None else _DEFAULT_CERTS_TTL)


def _max_age(cache_control: str) -> float | None:
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and value.isdigit():
            return float(value)
    return None
