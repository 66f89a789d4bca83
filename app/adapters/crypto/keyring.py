"""The keys directory: the key-encryption key (KEK) and the token signing key.

Files (all 0600, written by `iwrs keys init`, never committed, never in the database):
- `kek-<kid>.key`: 32 random bytes, base64; `kek.active` names the kid in use;
- `token-signing.pem`: the Ed25519 private key that signs access tokens.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEK_BYTES = 32
ACTIVE_FILE = "kek.active"
SIGNING_FILE = "token-signing.pem"


class KeyUnavailable(Exception):
    """The keys directory is missing, incomplete, unreadable or too open."""

    code = "key_unavailable"


@dataclass(frozen=True)
class Keyring:
    active_kid: str
    keks: dict[str, bytes] = field(repr=False)
    signing_key: Ed25519PrivateKey = field(repr=False)

    @property
    def active_kek(self) -> bytes:
        return self.keks[self.active_kid]


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyUnavailable(f"{path} is readable by others (mode {mode:o}); chmod 600 it")


def init_keys(keys_dir: Path) -> str:
    """Create a KEK and a signing key; refuse to overwrite existing ones. Returns the kid."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (keys_dir / ACTIVE_FILE).exists() or any(keys_dir.glob("kek-*.key")):
        raise KeyUnavailable(
            f"{keys_dir} already holds a key-encryption key; refusing to overwrite"
        )
    if (keys_dir / SIGNING_FILE).exists():
        raise KeyUnavailable(f"{keys_dir / SIGNING_FILE} exists; refusing to overwrite")
    kid = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
    _write_secret(keys_dir / f"kek-{kid}.key", base64.b64encode(secrets.token_bytes(KEK_BYTES)))
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_secret(keys_dir / SIGNING_FILE, pem)
    _write_secret(keys_dir / ACTIVE_FILE, kid.encode())
    return kid


def load_keyring(keys_dir: Path) -> Keyring:
    """Read and check every key; raise `KeyUnavailable` with a message saying what to do."""
    active = keys_dir / ACTIVE_FILE
    if not active.exists():
        raise KeyUnavailable(f"no key-encryption key in {keys_dir}: run `iwrs keys init`")
    try:
        _check_private(active)
        kid = active.read_text().strip()
        keks: dict[str, bytes] = {}
        for path in sorted(keys_dir.glob("kek-*.key")):
            _check_private(path)
            raw = base64.b64decode(path.read_bytes(), validate=True)
            if len(raw) != KEK_BYTES:
                raise KeyUnavailable(f"{path} does not hold a 256-bit key")
            keks[path.name.removeprefix("kek-").removesuffix(".key")] = raw
        if kid not in keks:
            raise KeyUnavailable(f"{ACTIVE_FILE} names {kid!r} but kek-{kid}.key is missing")
        signing_path = keys_dir / SIGNING_FILE
        if not signing_path.exists():
            raise KeyUnavailable(f"{signing_path} is missing: the keys directory is incomplete")
        _check_private(signing_path)
        signing = serialization.load_pem_private_key(signing_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise KeyUnavailable(f"cannot read the keys in {keys_dir}: {type(exc).__name__}") from exc
    if not isinstance(signing, Ed25519PrivateKey):
        raise KeyUnavailable(f"{keys_dir / SIGNING_FILE} is not an Ed25519 key")
    return Keyring(active_kid=kid, keks=keks, signing_key=signing)
