"""A user's TOTP secret, sealed with AES-256-GCM under a key-encryption key.

Users belong to no single study, so their secrets are sealed under the KEK itself (not a
study's data key), with associated data naming the user and the KEK id: a ciphertext copied
onto another user's row does not open. The KEK id is stored beside the ciphertext; a secret
sealed under a KEK that is no longer the active one is sealed again at its next use.

Not padded like a study's envelopes (app.adapters.crypto.envelope), on purpose: every secret
is 32 base32 characters (`Totp.new_secret`), so every ciphertext has the same 60 bytes, and
a second factor holds nothing about an arm or a kit type whatever its length.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.adapters.crypto.envelope import NONCE_BYTES, CannotOpen


def _aad(user_id: str, kid: str) -> bytes:
    return f"iwrs/user-totp/{user_id}/{kid}".encode()


def seal_user_secret(kek: bytes, kid: str, user_id: str, secret: str) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, secret.encode("utf-8"), _aad(user_id, kid))


def open_user_secret(kek: bytes, kid: str, user_id: str, sealed: bytes) -> str:
    try:
        plain = AESGCM(kek).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _aad(user_id, kid))
    except (InvalidTag, ValueError) as exc:
        raise CannotOpen(f"the second factor of user {user_id!r} does not open") from exc
    return plain.decode("utf-8")
