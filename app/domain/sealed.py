"""`Sealed`: ciphertext of a secret (an arm, a kit type, a seed, a study definition).

A `Sealed` only ever holds an envelope produced by the cipher adapter: it refuses bytes that
do not start with the envelope's version tag, so plaintext cannot be stored by mistake, and
its repr never shows the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

ENVELOPE_TAG = b"IWRS1"


@dataclass(frozen=True, slots=True)
class Sealed:
    envelope: bytes

    def __post_init__(self) -> None:
        if not self.envelope.startswith(ENVELOPE_TAG):
            raise ValueError("Sealed holds only an encryption envelope, never plaintext")

    def __repr__(self) -> str:
        return f"Sealed(<{len(self.envelope)} bytes>)"

    __str__ = __repr__
