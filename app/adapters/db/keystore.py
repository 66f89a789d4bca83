"""Study data keys: created on a study's first load, stored wrapped by the KEK, unwrapped
once per process and kept in memory only.

After `iwrs keys rotate` a running process still holds its unwrapped DEKs (a rotation
re-wraps them, it does not change them); a KEK id it does not know makes it re-read the
keyring once, and a new study's DEK is always wrapped under the KEK active now.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.adapters.cache import BoundedCache
from app.adapters.crypto.envelope import StudyCipher, new_dek, unwrap_dek, wrap_dek
from app.adapters.crypto.keyring import Keyring, KeyUnavailable
from app.adapters.db.models import StudyKeyRow


class KeyService:
    """Process-wide: the keyring, a cache of unwrapped DEKs by (study, version), and the
    decoded study definitions by envelope."""

    def __init__(self, keyring_loader: KeyringLoader) -> None:
        self.studies = BoundedCache()
        self._loader = keyring_loader
        self._cache: dict[tuple[int, int], StudyCipher] = {}
        # A study's active cipher once a transaction that used it has committed (a study
        # has one data key for life; `keys rotate` re-wraps it, the key itself is the same).
        self._committed: dict[int, StudyCipher] = {}
        self._lock = threading.Lock()

    def keyring(self) -> Keyring:
        return self._loader()

    def reload_keyring(self) -> Keyring:
        return self._loader.reload()

    def kek(self, kid: str) -> bytes:
        """The KEK named `kid`, re-reading the keyring once if it is not known yet."""
        keyring = self.keyring()
        if kid not in keyring.keks:
            keyring = self.reload_keyring()
        kek = keyring.keks.get(kid)
        if kek is None:
            raise KeyUnavailable(f"the key-encryption key {kid!r} is not in the keyring")
        return kek

    def create_study_key(self, session: Session, study_id: int, slug: str) -> StudyCipher:
        keyring = self.reload_keyring()
        dek = new_dek()
        row = StudyKeyRow(
            study_id=study_id,
            version=1,
            kek_id=keyring.active_kid,
            wrapped_dek=wrap_dek(keyring.active_kek, keyring.active_kid, slug, dek),
            created_at=datetime.now(UTC),
            retired_at=None,
        )
        session.add(row)
        session.flush()
        return StudyCipher(slug, row.version, dek)

    def cipher(self, session: Session, study_id: int, slug: str) -> StudyCipher:
        """The study's active cipher; looked up once per session (transaction)."""
        memo: dict[int, StudyCipher] = session.info.setdefault("iwrs_ciphers", {})
        if study_id in memo:
            return memo[study_id]
        known = self._committed.get(study_id)
        memo[study_id] = known or self._active_cipher(session, study_id, slug)
        return memo[study_id]

    def committed(self, session: Session) -> None:
        """The session's transaction committed: its studies' ciphers are known for good."""
        found: dict[int, StudyCipher] = session.info.get("iwrs_ciphers", {})
        with self._lock:
            self._committed.update(found)

    def _active_cipher(self, session: Session, study_id: int, slug: str) -> StudyCipher:
        row = session.scalars(
            select(StudyKeyRow)
            .where(StudyKeyRow.study_id == study_id, StudyKeyRow.retired_at.is_(None))
            .order_by(StudyKeyRow.version.desc())
            .limit(1)
        ).first()
        if row is None:
            raise KeyUnavailable(f"study {slug!r} has no data key")
        key = (study_id, row.version)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            kek = self.kek(row.kek_id)
        except KeyUnavailable:
            raise KeyUnavailable(
                f"study {slug!r} is wrapped by key {row.kek_id!r}, absent from the keyring"
            ) from None
        cipher = StudyCipher(slug, row.version, unwrap_dek(kek, row.kek_id, slug, row.wrapped_dek))
        with self._lock:
            self._cache[key] = cipher
        return cipher


class KeyringLoader:
    """Loads the keyring once, on first use, so the service can start and report not-ready."""

    def __init__(self, load: Callable[[], Keyring]) -> None:
        self._load = load
        self._keyring: Keyring | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Keyring:
        with self._lock:
            if self._keyring is None:
                self._keyring = self._load()
            return self._keyring

    def reload(self) -> Keyring:
        """Read the keys again (after a rotation); the old keyring stays if this fails."""
        keyring = self._load()
        with self._lock:
            self._keyring = keyring
        return keyring
