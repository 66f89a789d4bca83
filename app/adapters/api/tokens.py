"""Access tokens: short-lived JWTs signed with Ed25519 (EdDSA), PyJWT.

Validation follows RFC 8725: the algorithm is fixed (EdDSA; `none` and HMAC key confusion
are impossible), the type is `at+jwt` (RFC 9068), and issuer, audience, expiry, not-before,
issued-at, subject and id are all required.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from app.adapters.cache import BoundedCache
from app.adapters.crypto.keyring import Keyring
from app.domain.clients import Client

ALGORITHM = "EdDSA"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - the JWT type (RFC 9068), not a secret
LEEWAY_SECONDS = 5
VERIFIED_CACHE_SIZE = 10_000


class InvalidToken(Exception):
    """The bearer token is malformed, expired, tampered with or not ours."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    client_id: str
    secret_version: int
    issued_at: datetime


class TokenService:
    def __init__(
        self, keyring: Callable[[], Keyring], issuer: str, audience: str, ttl_seconds: int
    ) -> None:
        self._keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        # Tokens already verified, with the keyring that verified them and their validity
        # window: a client presents its token on every call for up to its lifetime.
        self._verified = BoundedCache(VERIFIED_CACHE_SIZE)

    def issue(self, client: Client, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client.client_id,
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(seconds=self.ttl_seconds),
            "jti": secrets.token_hex(16),
            "role": client.role.value,
            "studies": sorted(client.studies) if client.studies is not None else ["*"],
            "sites": {study: sorted(codes) for study, codes in sorted(client.sites.items())},
            "sv": client.secret_version,
        }
        return jwt.encode(
            claims,
            self._keyring().signing_key,
            algorithm=ALGORITHM,
            headers={"typ": TOKEN_TYPE},
        )

    def verify(self, token: str) -> TokenClaims:
        keyring = self._keyring()
        known: tuple[Keyring, TokenClaims, float, float] | None = self._verified.get(token)
        if known is not None:
            verified_by, claims, not_before, expires = known
            now = time.time()
            if (
                verified_by is keyring
                and not_before - LEEWAY_SECONDS <= now < expires + LEEWAY_SECONDS
            ):
                return claims
        found, not_before, expires = self._verify(token, keyring)
        self._verified.put(token, (keyring, found, not_before, expires))
        return found

    def _verify(self, token: str, keyring: Keyring) -> tuple[TokenClaims, float, float]:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != ALGORITHM or header.get("typ") != TOKEN_TYPE:
                raise InvalidToken("unexpected token header")
            claims = jwt.decode(
                token,
                keyring.signing_key.public_key(),
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
            )
            found = TokenClaims(
                client_id=str(claims["sub"]),
                secret_version=int(claims["sv"]),
                issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
            )
            return found, float(claims["nbf"]), float(claims["exp"])
        except (jwt.PyJWTError, KeyError, TypeError, ValueError) as exc:
            raise InvalidToken(type(exc).__name__) from None
