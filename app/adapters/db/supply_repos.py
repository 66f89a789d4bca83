"""Kits, lots, shipments and dispensations (see app.services.supply)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.adapters.db.keystore import KeyService


class SqlSupplyRepository:
    def __init__(self, session: Session, keys: KeyService) -> None:
        self._session = session
        self._keys = keys
