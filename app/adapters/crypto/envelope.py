"""Envelope encryption: a data key (DEK) per study, wrapped by the key-encryption key (KEK).

Every secret is sealed with AES-256-GCM under its study's DEK, with associated data naming
the study, the record kind and the record id: a ciphertext copied onto another row, kind or
study does not open. A DEK is stored only wrapped (AES-256-GCM under the KEK, associated
data naming the study and the KEK id).

Envelope, version 2 (written today):
    b"IWRS2" | DEK version (2 bytes, big endian) | nonce (12 bytes) | ciphertext and tag (16)
    The ciphertext is AES-256-GCM of the *frame*, with associated data
    "IWRS2|{study}|{kind}|{record id}" (UTF-8; the tag is bound in, so an envelope relabelled
    as version 1 does not open):
        frame = length of the value (4 bytes, big endian) | the value | zero bytes
    and the frame is exactly 4 + `size` bytes, `size` depending only on the kind and on facts
    stored in clear, never on the value. An envelope is therefore 39 + `size` bytes, and the
    length of a sealed column tells nothing about the arm, kit type, trace or list it holds.
    A value longer than its size is refused (`TooLongToSeal`), never sealed at a length of its
    own. Opening checks the length and that the padding is zeros.

The size rule (`padded_size`):
- per-record kinds have one size each: an arm ("allocation") and a kit type ("kit_type"),
  `CODE_SIZE` = 64 bytes (a study file allows codes of at most 32 bytes); a list seed
  ("seed", 32 bytes), `SEED_SIZE` = 64; a minimization decision trace ("trace", JSON),
  `TRACE_SIZE` = 8 KiB (a study's arms and minimization factors are bounded so the largest
  possible trace, about 7.7 KiB, fits: app.domain.study);
- a stratum's slot list ("stratum", JSON [[arm, block, block size, number], ...]):
  `stratum_size(slots, longest arm)` = 2 + slots x (longest arm code of the study +
  `SLOT_OVERHEAD`), the slot count being stored in clear beside it (stratum.length) and the
  study's longest arm code a fact of its definition, not of the list; `SLOT_OVERHEAD` (30)
  holds a slot's quotes, brackets and commas (9) and 21 digits (block up to 7, block size
  up to 4, randomization number up to 10);
- a study definition ("study_definition", one per study) is rounded up to the next multiple
  of `BUCKET` = 16 KiB: its length says only which 16 KiB it falls in.

Envelope, version 1 (legacy, still opened; `iwrs keys reseal` seals it again as version 2):
    b"IWRS1" | DEK version (2 bytes) | nonce (12 bytes) | AES-256-GCM of the value itself,
    associated data "{study}|{kind}|{record id}". Its length is the value's length plus 35.
"""

from __future__ import annotations

import secrets
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.domain.sealed import ENVELOPE_TAG, LEGACY_ENVELOPE_TAG, Sealed

NONCE_BYTES = 12
OPENED_CACHE_SIZE = 200_000
_HEAD = len(ENVELOPE_TAG) + 2 + NONCE_BYTES
_LENGTH_BYTES = 4

CODE_SIZE: Final = 64
SEED_SIZE: Final = 64
TRACE_SIZE: Final = 8192
SLOT_OVERHEAD: Final = 30
BUCKET: Final = 16384
FIXED_SIZES: Final = {
    "allocation": CODE_SIZE,
    "kit_type": CODE_SIZE,
    "seed": SEED_SIZE,
    "trace": TRACE_SIZE,
}
BUCKETED_KINDS: Final = frozenset({"study_definition"})


class CannotOpen(Exception):
    """A ciphertext did not open: wrong key, or copied from another record."""

    code = "key_mismatch"


class TooLongToSeal(ValueError):
    """A value is longer than its kind's sealed size: refused, never sealed at its own length."""

    code = "too_long_to_seal"


def stratum_size(slots: int, longest_arm: int) -> int:
    """The sealed size of a stratum of `slots` slots in a study whose longest arm code has
    `longest_arm` bytes (see the module doc)."""
    return 2 + slots * (longest_arm + SLOT_OVERHEAD)


def padded_size(kind: str, length: int) -> int:
    """The sealed size of a value of `kind` (fixed, or a bucket for the bucketed kinds)."""
    fixed = FIXED_SIZES.get(kind)
    if fixed is not None:
        return fixed
    if kind in BUCKETED_KINDS:
        return max(1, -(-(length + _LENGTH_BYTES) // BUCKET)) * BUCKET - _LENGTH_BYTES
    raise ValueError(f"no sealed size is defined for a {kind!r}: give one")


def sealed_length(size: int) -> int:
    """The length of an envelope whose value was padded to `size` bytes."""
    return _HEAD + _LENGTH_BYTES + size + 16


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
        self._head = ENVELOPE_TAG + dek_version.to_bytes(2, "big")
        self._padded_aad = ENVELOPE_TAG + b"|" + f"{study}|".encode()
        self._aead = AESGCM(dek)
        # Opened envelopes by (kind, record, envelope): a kit's type is read at every
        # dispensing at its site; the envelope is part of the key, so an edited row is
        # opened (and checked) again.
        self._opened: dict[tuple[str, str, bytes], bytes] = {}

    def __repr__(self) -> str:
        return f"StudyCipher({self._study!r}, v{self._version})"

    def _aad(self, kind: str, record_id: str) -> bytes:
        return f"{self._study}|{kind}|{record_id}".encode()

    def seal(
        self, kind: str, record_id: str, plaintext: bytes, *, size: int | None = None
    ) -> Sealed:
        """Seal `plaintext` padded to `size` bytes (by default its kind's size: `padded_size`);
        `TooLongToSeal` when it does not fit."""
        length = len(plaintext)
        if size is None:
            size = FIXED_SIZES.get(kind) or padded_size(kind, length)
        if length > size:
            raise TooLongToSeal(
                f"a {kind} of {length} bytes exceeds its sealed size of {size} bytes in study "
                f"{self._study!r}: refused rather than sealed at a length of its own"
            )
        frame = length.to_bytes(_LENGTH_BYTES, "big") + plaintext.ljust(size, b"\0")
        nonce = secrets.token_bytes(NONCE_BYTES)
        aad = self._padded_aad + f"{kind}|{record_id}".encode()
        return Sealed(self._head + nonce + self._aead.encrypt(nonce, frame, aad))

    def seal_remembered(
        self, kind: str, record_id: str, plaintext: bytes, *, size: int | None = None
    ) -> Sealed:
        """`seal`, the envelope remembered as opened (a new kit list is read back at once)."""
        sealed = self.seal(kind, record_id, plaintext, size=size)
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
        """The value of an envelope of either version."""
        envelope = sealed.envelope
        version = int.from_bytes(envelope[len(ENVELOPE_TAG) : len(ENVELOPE_TAG) + 2], "big")
        if version != self._version:
            raise CannotOpen(f"sealed under DEK v{version}, this cipher holds v{self._version}")
        nonce, body = envelope[len(ENVELOPE_TAG) + 2 : _HEAD], envelope[_HEAD:]
        legacy = envelope.startswith(LEGACY_ENVELOPE_TAG)
        aad = self._aad(kind, record_id)
        try:
            opened = self._aead.decrypt(nonce, body, aad if legacy else ENVELOPE_TAG + b"|" + aad)
        except (InvalidTag, ValueError) as exc:
            raise CannotOpen(f"a {kind} of study {self._study!r} does not open") from exc
        if legacy:
            return opened
        length = int.from_bytes(opened[:_LENGTH_BYTES], "big")
        end = _LENGTH_BYTES + length
        if end > len(opened) or opened.count(0, end) != len(opened) - end:
            raise CannotOpen(f"a {kind} of study {self._study!r} is not a well-formed frame")
        return opened[_LENGTH_BYTES:end]
