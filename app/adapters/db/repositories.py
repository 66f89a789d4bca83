"""Repositories: the only place that queries rows. Scope (study, site) is part of the query,
so a record outside it is simply not found."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from app.adapters.db import hot, memo
from app.adapters.db.keystore import KeyService
from app.adapters.db.models import DepotRow, SiteRow, StudyRow, SubjectRow
from app.adapters.studyfiles.codec import decode_stored
from app.domain.sealed import Sealed
from app.domain.study import Study
from app.services.ports import StoredStudy

DEFINITION_KIND = "study_definition"


_study = StudyRow.__table__.c
_STUDY = select(
    _study.id,
    _study.slug,
    _study.version,
    _study.definition_sha256,
    _study.definition_sealed,
    _study.mode,
    _study.locked_at,
    _study.locked_by,
).where(_study.slug == bindparam("slug"))  # built once: it runs on every call of the API
_STUDY_QUERIES = {
    (False, False): hot.Hot(_STUDY),
    (False, True): hot.Hot(_STUDY.with_for_update(read=True)),
    (True, False): hot.Hot(_STUDY.with_for_update()),
    (True, True): hot.Hot(_STUDY.with_for_update()),
}


class SqlStudyRepository:
    def __init__(self, session: Session, keys: KeyService) -> None:
        self._session = session
        self._keys = keys

    def _row(self, slug: str, *, for_update: bool = False) -> StudyRow | None:
        query = select(StudyRow).where(StudyRow.slug == slug)
        if for_update:
            query = query.with_for_update()
        row = self._session.scalars(query).first()
        if row is not None:
            memo.remember_study(self._session, slug, row)
        return row

    def _stored(self, row: Any) -> StoredStudy:
        # Decoded once per process for each stored version: a definition never changes
        # under its envelope (the envelope is part of the key).
        key = (row.slug, row.definition_sealed)
        cached = self._keys.studies.get(key)
        if isinstance(cached, StoredStudy):
            return cached
        cipher = self._keys.cipher(self._session, row.id, row.slug)
        raw = cipher.open(DEFINITION_KIND, row.slug, Sealed(row.definition_sealed))
        document, study = decode_stored(raw)
        stored = StoredStudy(row.slug, row.version, row.definition_sha256, study, document)
        self._keys.studies.put(key, stored)
        return stored

    def get(self, slug: str, *, for_update: bool = False, hold: bool = False) -> StoredStudy | None:
        # Read on every call of the API: a plain read of the columns it needs.
        found = hot.rows(self._session, _STUDY_QUERIES[(for_update, hold)], {"slug": slug})
        if not found:
            return None
        row = found[0]
        memo.remember_study(self._session, slug, row)
        if hold or for_update:
            # Read under the row's lock: the lock state cannot change until commit.
            memo.held(self._session)[slug] = (
                None if row.locked_at is None else (row.locked_at, row.locked_by or "")
            )
        return self._stored(row)

    def list(self) -> list[StoredStudy]:
        rows = self._session.scalars(select(StudyRow).order_by(StudyRow.slug)).all()
        return [self._stored(row) for row in rows]

    def exists(self, slug: str) -> bool:
        return self.study_id(slug) is not None

    def mode(self, slug: str) -> str:
        state = memo.states(self._session).get(slug)
        if state is not None:
            return state.mode
        mode = self._session.scalar(select(StudyRow.mode).where(StudyRow.slug == slug))
        assert mode is not None
        return mode

    def set_mode(self, slug: str, mode: str) -> None:
        row = self._row(slug, for_update=True)
        assert row is not None
        row.mode = mode
        self._session.flush()
        memo.forget_study_state(self._session, slug)

    def study_id(self, slug: str) -> int | None:
        return self._session.scalar(select(StudyRow.id).where(StudyRow.slug == slug))

    def save(self, study: Study, document: Mapping[str, Any], sha256: str, version: int) -> None:
        now = datetime.now(UTC)
        row = self._row(study.slug, for_update=True)
        if row is None:
            row = StudyRow(slug=study.slug, created_at=now, definition_sealed=b"", mode="live")
            self._session.add(row)
        row.title, row.protocol, row.version = study.title, study.protocol, version
        row.definition_sha256, row.updated_at = sha256, now
        self._session.flush()
        if version == 1 and not row.definition_sealed:
            cipher = self._keys.create_study_key(self._session, row.id, study.slug)
        else:
            cipher = self._keys.cipher(self._session, row.id, study.slug)
        raw = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        row.definition_sealed = cipher.seal(DEFINITION_KIND, study.slug, raw.encode()).envelope
        self._sync_sites(row.id, study)

    def _sync_sites(self, study_id: int, study: Study) -> None:
        depots = {
            d.code: d
            for d in self._session.scalars(select(DepotRow).where(DepotRow.study_id == study_id))
        }
        for depot in study.depots:
            row = depots.get(depot.code)
            if row is None:
                row = DepotRow(study_id=study_id, code=depot.code)
                self._session.add(row)
                depots[depot.code] = row
            row.name, row.country = depot.name, depot.country
        self._session.flush()
        sites = {
            s.code: s
            for s in self._session.scalars(select(SiteRow).where(SiteRow.study_id == study_id))
        }
        wanted = {s.code for s in study.sites}
        for site in study.sites:
            site_row = sites.get(site.code)
            if site_row is None:
                site_row = SiteRow(study_id=study_id, code=site.code)
                self._session.add(site_row)
            site_row.name, site_row.country = site.name, site.country
            site_row.active, site_row.timezone = site.active, site.timezone
            site_row.depot_id = depots[site.depot].id
        for code, site_row in sites.items():
            if code not in wanted:
                self._session.delete(site_row)
        self._session.flush()
        used = {s.depot for s in study.sites}
        for code, depot_row in depots.items():
            if code not in {d.code for d in study.depots} and code not in used:
                self._session.delete(depot_row)

    def randomized_count(self, slug: str) -> int:
        return int(
            self._session.scalar(
                select(func.count())
                .select_from(SubjectRow)
                .join(StudyRow, StudyRow.id == SubjectRow.study_id)
                .where(StudyRow.slug == slug, SubjectRow.randomized_at.is_not(None))
            )
            or 0
        )

    def sites_with_subjects(self, slug: str) -> set[str]:
        return set(
            self._session.scalars(
                select(SiteRow.code)
                .join(SubjectRow, SubjectRow.site_id == SiteRow.id)
                .join(StudyRow, StudyRow.id == SiteRow.study_id)
                .where(StudyRow.slug == slug)
                .distinct()
            )
        )
