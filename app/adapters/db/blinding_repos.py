"""Unblindings, the notification outbox, study lock and key rotation (see
app.services.blinding)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.adapters.db.keystore import KeyService


class SqlBlindingRepository:
    def __init__(self, session: Session, keys: KeyService) -> None:
        self._session = session
        self._keys = keys
