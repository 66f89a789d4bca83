"""`Sealed`: ciphertext of a secret (an arm, a kit type, a seed, a study definition).

A `Sealed` only ever holds an envelope produced by the cipher adapter: it refuses bytes that
do not start with an envelope's version tag, so plaintext cannot be stored by mistake, and
its repr never shows the bytes.

Two envelope versions exist (app.adapters.crypto.envelope describes both):
- `ENVELOPE_TAG` b"IWRS2", written today: the value is framed (its length, the value, zero
  padding) to a size fixed by its kind and by non-secret facts only, so the length of a
  sealed column tells nothing about what it holds;
- `LEGACY_ENVELOPE_TAG` b"IWRS1", the value sealed as it is (its length shows through); still
  opened, and re-sealed as IWRS2 by `iwrs keys reseal`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

ENVELOPE_TAG: Final = b"IWRS2"
LEGACY_ENVELOPE_TAG: Final = b"IWRS1"
ENVELOPE_TAGS: Final = (ENVELOPE_TAG, LEGACY_ENVELOPE_TAG)


@dataclass(frozen=True, slots=True)
class Sealed:
    envelope: bytes

    def __post_init__(self) -> None:
        if not self.envelope.startswith(ENVELOPE_TAGS):
            raise ValueError("Sealed holds only an encryption envelope, never plaintext")

    @property
    def legacy(self) -> bool:
        """Sealed at the value's own length (IWRS1): to be re-sealed padded."""
        return self.envelope.startswith(LEGACY_ENVELOPE_TAG)

    def __repr__(self) -> str:
        return f"Sealed(<{len(self.envelope)} bytes>)"

    __str__ = __repr__
