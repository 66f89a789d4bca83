"""The keys directory: the key-encryption key (KEK) and the token signing key.

Files (all 0600, written by `iwrs keys init`, never committed, never in the database):
- `kek-<kid>.key`: 32 random bytes, base64; `kek.active` names the kid in use;
- `kek-<kid>.key.retired`: a KEK that `iwrs keys rotate` replaced; never loaded;
- `token-signing.pem`: the Ed25519 private key that signs access tokens.

In a container the KEK may come from the environment instead (`IWRS_KEK`, base64 of 32
bytes, with `IWRS_KEK_ID`), and the signing key too (`IWRS_TOKEN_SIGNING_KEY`, PEM): a KEK
given there is the only one loaded, the directory's KEK files are then ignored.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

if TYPE_CHECKING:
    from app.settings import Settings

KEK_BYTES = 32
ACTIVE_FILE = "kek.active"
SIGNING_FILE = "token-signing.pem"
RETIRED_SUFFIX = ".retired"
KID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class KeyUnavailable(Exception):
    """The keys directory is missing, incomplete, unreadable or too open."""

    code = "key_unavailable"


@dataclass(frozen=True)
class Keyring:
    active_kid: str
    keks: dict[str, bytes] = field(repr=False)
    signing_key: Ed25519PrivateKey = field(repr=False)
    source: str = "directory"  # where the KEK came from: "directory" or "environment"

    @property
    def active_kek(self) -> bytes:
        return self.keks[self.active_kid]


@dataclass(frozen=True)
class KeySources:
    """Key material given in the environment (IWRS_KEK, IWRS_KEK_ID, IWRS_TOKEN_SIGNING_KEY)
    rather than in files; None for each one the keys directory provides."""

    kek_b64: str | None = field(default=None, repr=False)
    kek_id: str | None = None
    signing_pem: str | None = field(default=None, repr=False)

    @property
    def kek_from_environment(self) -> bool:
        return self.kek_b64 is not None or self.kek_id is not None

    @classmethod
    def from_settings(cls, settings: Settings) -> KeySources:
        return cls(
            kek_b64=settings.kek.get_secret_value() if settings.kek else None,
            kek_id=settings.kek_id,
            signing_pem=settings.token_signing_key.get_secret_value()
            if settings.token_signing_key
            else None,
        )


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyUnavailable(f"{path} is readable by others (mode {mode:o}); chmod 600 it")


def new_kid() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def kek_path(keys_dir: Path, kid: str) -> Path:
    return keys_dir / f"kek-{kid}.key"


def init_keys(keys_dir: Path) -> str:
    """Create a KEK and a signing key; refuse to overwrite existing ones. Returns the kid."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (keys_dir / ACTIVE_FILE).exists() or any(keys_dir.glob("kek-*.key")):
        raise KeyUnavailable(
            f"{keys_dir} already holds a key-encryption key; refusing to overwrite"
        )
    if (keys_dir / SIGNING_FILE).exists():
        raise KeyUnavailable(f"{keys_dir / SIGNING_FILE} exists; refusing to overwrite")
    kid = new_kid()
    _write_secret(kek_path(keys_dir, kid), base64.b64encode(secrets.token_bytes(KEK_BYTES)))
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_secret(keys_dir / SIGNING_FILE, pem)
    _write_secret(keys_dir / ACTIVE_FILE, kid.encode())
    return kid


def add_kek(keys_dir: Path) -> str:
    """Write a new KEK file (0600), not yet active; returns its kid."""
    kid = new_kid()
    _write_secret(kek_path(keys_dir, kid), base64.b64encode(secrets.token_bytes(KEK_BYTES)))
    return kid


def discard_kek(keys_dir: Path, kid: str) -> None:
    """Remove a KEK that never became active (a rotation that did not commit)."""
    kek_path(keys_dir, kid).unlink(missing_ok=True)


def activate_kek(keys_dir: Path, kid: str) -> None:
    """Name `kid` in `kek.active`, atomically (a new 0600 file renamed over the old)."""
    if not kek_path(keys_dir, kid).exists():
        raise KeyUnavailable(f"kek-{kid}.key is missing; cannot make it active")
    tmp = keys_dir / f".{ACTIVE_FILE}.{secrets.token_hex(4)}"
    _write_secret(tmp, kid.encode())
    os.replace(tmp, keys_dir / ACTIVE_FILE)


def retire_kek(keys_dir: Path, kid: str) -> Path:
    """Rename `kek-<kid>.key` to `kek-<kid>.key.retired`: kept for old backups, never loaded."""
    path = kek_path(keys_dir, kid)
    retired = path.with_name(path.name + RETIRED_SUFFIX)
    os.replace(path, retired)
    return retired


def _read_kek(path: Path) -> bytes:
    _check_private(path)
    raw = base64.b64decode(path.read_bytes(), validate=True)
    if len(raw) != KEK_BYTES:
        raise KeyUnavailable(f"{path} does not hold a 256-bit key")
    return raw


def retired_keks(keys_dir: Path) -> dict[str, bytes]:
    """The retired KEKs of the directory (for `iwrs keys status` only)."""
    found: dict[str, bytes] = {}
    for path in sorted(keys_dir.glob("kek-*.key" + RETIRED_SUFFIX)):
        kid = path.name.removeprefix("kek-").removesuffix(".key" + RETIRED_SUFFIX)
        try:
            found[kid] = _read_kek(path)
        except (OSError, ValueError, KeyUnavailable):
            continue
    return found


def file_modes(keys_dir: Path) -> list[tuple[str, int]]:
    """Every file of the keys directory with its permission bits."""
    if not keys_dir.is_dir():
        return []
    return [
        (path.name, stat.S_IMODE(path.stat().st_mode))
        for path in sorted(keys_dir.iterdir())
        if path.is_file()
    ]


def _kek_from_environment(sources: KeySources) -> tuple[str, dict[str, bytes]]:
    if sources.kek_b64 is None or not sources.kek_id:
        raise KeyUnavailable("IWRS_KEK and IWRS_KEK_ID must be set together")
    if not KID_PATTERN.match(sources.kek_id):
        raise KeyUnavailable("IWRS_KEK_ID must be 1 to 64 letters, digits, '.', '_' or '-'")
    try:
        raw = base64.b64decode(sources.kek_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyUnavailable("IWRS_KEK is not base64") from None
    if len(raw) != KEK_BYTES:
        raise KeyUnavailable("IWRS_KEK does not hold a 256-bit key (base64 of 32 bytes)")
    return sources.kek_id, {sources.kek_id: raw}


def _kek_from_directory(keys_dir: Path) -> tuple[str, dict[str, bytes]]:
    active = keys_dir / ACTIVE_FILE
    if not active.exists():
        raise KeyUnavailable(f"no key-encryption key in {keys_dir}: run `iwrs keys init`")
    _check_private(active)
    kid = active.read_text().strip()
    keks = {
        path.name.removeprefix("kek-").removesuffix(".key"): _read_kek(path)
        for path in sorted(keys_dir.glob("kek-*.key"))
    }
    if kid not in keks:
        raise KeyUnavailable(f"{ACTIVE_FILE} names {kid!r} but kek-{kid}.key is missing")
    return kid, keks


def _signing_key(keys_dir: Path, sources: KeySources) -> object:
    if sources.signing_pem is not None:
        pem = sources.signing_pem.strip()
        if "\n" not in pem:  # an env file cannot hold newlines: accept them escaped
            pem = pem.replace("\\n", "\n")
        try:
            return serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeyUnavailable("IWRS_TOKEN_SIGNING_KEY is not a PEM private key") from None
    signing_path = keys_dir / SIGNING_FILE
    if not signing_path.exists():
        raise KeyUnavailable(f"{signing_path} is missing: the keys directory is incomplete")
    _check_private(signing_path)
    return serialization.load_pem_private_key(signing_path.read_bytes(), password=None)


def load_keyring(keys_dir: Path, sources: KeySources | None = None) -> Keyring:
    """Read and check every key; raise `KeyUnavailable` with a message saying what to do.

    `sources` names key material given in the environment; each piece it does not give is
    read from the keys directory. No message ever holds key material."""
    sources = sources or KeySources()
    try:
        if sources.kek_from_environment:
            kid, keks = _kek_from_environment(sources)
        else:
            kid, keks = _kek_from_directory(keys_dir)
        signing = _signing_key(keys_dir, sources)
    except (OSError, ValueError) as exc:
        raise KeyUnavailable(f"cannot read the keys in {keys_dir}: {type(exc).__name__}") from exc
    if not isinstance(signing, Ed25519PrivateKey):
        where = "IWRS_TOKEN_SIGNING_KEY" if sources.signing_pem else str(keys_dir / SIGNING_FILE)
        raise KeyUnavailable(f"{where} is not an Ed25519 key")
    source = "environment" if sources.kek_from_environment else "directory"
    return Keyring(active_kid=kid, keks=keks, signing_key=signing, source=source)


def settings_keyring(settings: Settings) -> Keyring:
    """The keyring the settings name: the keys directory, or the environment's keys."""
    return load_keyring(settings.keys_dir, KeySources.from_settings(settings))
