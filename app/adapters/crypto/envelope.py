"""Envelope encryption: a data key (DEK) per study, wrapped by the key-encryption key (KEK).

Every secret is sealed with AES-256-GCM under its study's DEK, with associated data naming
the study, the record kind and the record id: a ciphertext copied onto another row, kind or
study does not open. Envelope layout: b"IWRS1" | DEK version (2 bytes, big endian) |
nonce (12 bytes) | ciphertext and tag. A DEK is stored only wrapped (AES-256-GCM under the
KEK, associated data naming the study and the KEK id).
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.domain.sealed import ENVELOPE_TAG, Sealed

NONCE_BYTES = 12
OPENED_CACHE_SIZE = 200_000


class CannotOpen(Exception):
    """A ciphertext did not open: wrong key, or copied from another record."""

    code = "key_mismatch"


def new_dek() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _dek_aad(study: str, kid: str) -> bytes:
    return f"iwrs/dek/{study}/{kid}".encode()


def wrap_dek(kek: bytes, kid: str, study: str, dek: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, dek, _dek_aad(study, kid))


def unwrap_dek(kek: bytes, kid: str, study: str, wrapped: bytes) -> bytes:
    try:
        return AESGCM(kek).decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _dek_aad(study, kid)
        )
    except (InvalidTag, ValueError) as exc:
        raise CannotOpen(f"the key-encryption key {kid!r} does not open study {study!r}") from exc


class StudyCipher:
    """Seals and opens one study's secrets under one of its DEKs."""

    def __init__(self, study: str, dek_version: int, dek: bytes) -> None:
        self._study = study
        self._version = dek_version
        self._aead = AESGCM(dek)
        # Opened envelopes by (kind, record, envelope): a kit's type is read at every
        # dispensing at its site; the envelope is part of the key, so an edited row is
        # opened (and checked) again.
        self._opened: dict[tuple[str, str, bytes], bytes] = {}

    def __repr__(self) -> str:
        return f"StudyCipher({self._study!r}, v{self._version})"

    def _aad(self, kind: str, record_id: str) -> bytes:
        return f"{self._study}|{kind}|{record_id}".encode()

    def seal(self, kind: str, record_id: str, plaintext: bytes) -> Sealed:
        nonce = secrets.token_bytes(NONCE_BYTES)
        body = self._aead.encrypt(nonce, plaintext, self._aad(kind, record_id))
        return Sealed(ENVELOPE_TAG + self._version.to_bytes(2, "big") + nonce + body)

    def seal_remembered(self, kind: str, record_id: str, plaintext: bytes) -> Sealed:
        """`seal`, the envelope remembered as opened (a new kit list is read back at once)."""
        sealed = self.seal(kind, record_id, plaintext)
        self._remember((kind, record_id, sealed.envelope), plaintext)
        return sealed

    def _remember(self, key: tuple[str, str, bytes], plaintext: bytes) -> None:
        if len(self._opened) >= OPENED_CACHE_SIZE:
            self._opened.clear()
        self._opened[key] = plaintext

    def open_cached(self, kind: str, record_id: str, sealed: Sealed) -> bytes:
        """`open`, remembered for this process (bounded): for records read again and again."""
        return self.open_envelope_cached(kind, record_id, sealed.envelope)

    def open_envelope_cached(self, kind: str, record_id: str, envelope: bytes) -> bytes:
        """`open_cached` of an envelope as read from its column: wrapped in `Sealed` (which
        checks it is one) only when it is opened, not on every read of a remembered one
        (a site's stock read opens about 170 kit types)."""
        key = (kind, record_id, envelope)
        found = self._opened.get(key)
        if found is None:
            found = self.open(kind, record_id, Sealed(envelope))
            self._remember(key, found)
        return found

    def open(self, kind: str, record_id: str, sealed: Sealed) -> bytes:
        raw = sealed.envelope[len(ENVELOPE_TAG) :]
        version = int.from_bytes(raw[:2], "big")
        if version != self._version:
            raise CannotOpen(f"sealed under DEK v{version}, this cipher holds v{self._version}")
        nonce, body = raw[2 : 2 + NONCE_BYTES], raw[2 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, self._aad(kind, record_id))
        except (InvalidTag, ValueError) as exc:
            raise CannotOpen(f"a {kind} of study {self._study!r} does not open") from exc
