"""Repositories of API clients, their grants, the token throttle, and the audit reader."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import ColumnElement, and_, bindparam, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.adapters.cache import BoundedCache
from app.adapters.db import hot
from app.adapters.db.audit import chain_head, iter_chain, row_to_record
from app.adapters.db.models import (
    ApiClientGrantRow,
    ApiClientRow,
    AuditEventRow,
    AuthThrottleRow,
    SiteRow,
    StudyRow,
)
from app.domain.audit import AuditRecord
from app.domain.clients import CallerNoLongerValid, Client, ThrottleState
from app.domain.roles import Role
from app.services.ports import AuditQuery


def read_grants(
    session: Session, grant: Any, owner: ColumnElement[bool]
) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """The studies and, by study, the sites granted to a client or a user (grant rows with
    `study_id` and an optional `site_id`)."""
    studies: set[str] = set()
    sites: dict[str, set[str]] = defaultdict(set)
    query = (
        select(StudyRow.slug, SiteRow.code)
        .select_from(grant)
        .join(StudyRow, StudyRow.id == grant.study_id)
        .outerjoin(SiteRow, SiteRow.id == grant.site_id)
        .where(owner)
    )
    for slug, site in session.execute(query):
        studies.add(slug)
        if site is not None:
            sites[slug].add(site)
    return frozenset(studies), {k: frozenset(v) for k, v in sites.items()}


GRANTS_CACHE_SIZE = 10_000
_GRANTS: WeakKeyDictionary[Any, BoundedCache] = WeakKeyDictionary()  # by engine


def write_grants(
    session: Session,
    studies: Iterable[str],
    sites: Mapping[str, frozenset[str]],
    grant: Callable[[int, int | None], Any],
) -> None:
    """Store the grants of a new client or user: one row per study without sites, else one
    per site; `grant(study_id, site_id)` makes the row."""
    for slug in sorted(studies):
        study_id = session.scalar(select(StudyRow.id).where(StudyRow.slug == slug))
        assert study_id is not None
        codes = sorted(sites.get(slug, ()))
        if not codes:
            session.add(grant(study_id, None))
        for code in codes:
            site_id = session.scalar(
                select(SiteRow.id).where(SiteRow.study_id == study_id, SiteRow.code == code)
            )
            session.add(grant(study_id, site_id))
    session.flush()


_CLIENT = select(ApiClientRow.__table__).where(
    ApiClientRow.__table__.c.client_id == bindparam("client_id")
)  # built once: every API call reads its client


_CALLER = hot.Hot(
    select(ApiClientRow.__table__.c.secret_version, ApiClientRow.__table__.c.disabled_at).where(
        ApiClientRow.__table__.c.client_id == bindparam("client_id")
    )
)


def _valid(found: list[Any], secret_version: int) -> bool:
    return (
        bool(found) and found[0].disabled_at is None and found[0].secret_version == secret_version
    )


class SqlClientRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def _to_domain(self, row: Any) -> Client:
        # A client's grants are fixed when it is made: kept per database, keyed by the
        # client's row and its (random, unique) client id.
        bind = self._session.get_bind()
        per_database = _GRANTS.get(bind)
        if per_database is None:
            per_database = _GRANTS.setdefault(bind, BoundedCache(GRANTS_CACHE_SIZE))
        key = (row.id, row.client_id)
        grants = per_database.get(key)
        if grants is None:
            grants = read_grants(
                self._session, ApiClientGrantRow, ApiClientGrantRow.client_pk == row.id
            )
            per_database.put(key, grants)
        studies, sites = grants
        return Client(
            client_id=row.client_id,
            name=row.name,
            role=Role(row.role),
            studies=None if row.all_studies else studies,
            sites=sites,
            secret_hash=row.secret_hash,
            secret_version=row.secret_version,
            disabled_at=row.disabled_at,
            created_at=row.created_at,
        )

    def _row(self, client_id: str, for_update: bool = False) -> ApiClientRow | None:
        query = select(ApiClientRow).where(ApiClientRow.client_id == client_id)
        if for_update:
            query = query.with_for_update()
        return self._session.scalars(query).first()

    def add(self, client: Client) -> None:
        row = ApiClientRow(
            client_id=client.client_id,
            name=client.name,
            role=client.role.value,
            all_studies=client.studies is None,
            secret_hash=client.secret_hash,
            secret_version=client.secret_version,
            disabled_at=client.disabled_at,
            created_at=datetime.now(UTC),
        )
        self._session.add(row)
        self._session.flush()
        write_grants(
            self._session,
            client.studies or (),
            client.sites,
            lambda study_id, site_id: ApiClientGrantRow(
                client_pk=row.id, study_id=study_id, site_id=site_id
            ),
        )

    def get(self, client_id: str, *, for_update: bool = False) -> Client | None:
        if for_update:
            row = self._row(client_id, for_update)
            return None if row is None else self._to_domain(row)
        # Every API call checks its client: one plain read.
        found = self._session.connection().execute(_CLIENT, {"client_id": client_id}).first()
        return None if found is None else self._to_domain(found)

    def still_valid(self, client_id: str, secret_version: int) -> bool:
        """The client exists, is enabled and still has this secret version."""
        return _valid(hot.rows(self._session, _CALLER, {"client_id": client_id}), secret_version)

    def check_still_valid(self, client_id: str, secret_version: int) -> None:
        """`still_valid`, checked with the transaction's next statement (the same round
        trip): CallerNoLongerValid is raised before that statement's rows are used."""

        def verify(found: list[Any]) -> None:
            if not _valid(found, secret_version):
                raise CallerNoLongerValid("the token is not valid")

        hot.check_later(self._session, _CALLER, {"client_id": client_id}, verify)

    def get_by_name(self, name: str) -> Client | None:
        row = self._session.scalars(select(ApiClientRow).where(ApiClientRow.name == name)).first()
        return None if row is None else self._to_domain(row)

    def list(self) -> list[Client]:
        rows = self._session.scalars(select(ApiClientRow).order_by(ApiClientRow.id)).all()
        return [self._to_domain(r) for r in rows]

    def save(self, client: Client) -> None:
        row = self._row(client.client_id)
        assert row is not None
        row.secret_hash = client.secret_hash
        row.secret_version = client.secret_version
        row.disabled_at = client.disabled_at
        self._session.flush()


class SqlThrottleRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, key: str, *, for_update: bool = False) -> ThrottleState | None:
        if for_update:
            # Make the row exist, so concurrent failures for one key serialize on it.
            dialect = self._session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            self._session.execute(
                insert(AuthThrottleRow)
                .values(key=key, failures=0, first_failure_at=datetime.now(UTC))
                .on_conflict_do_nothing(index_elements=["key"])
            )
        query = select(AuthThrottleRow).where(AuthThrottleRow.key == key)
        if for_update:
            query = query.with_for_update()
        row = self._session.scalars(query.execution_options(populate_existing=True)).first()
        if row is None or row.failures == 0:
            return None
        return ThrottleState(row.key, row.failures, row.first_failure_at, row.locked_until)

    def save(self, state: ThrottleState) -> None:
        row = self._session.get(AuthThrottleRow, state.key)
        if row is None:
            row = AuthThrottleRow(key=state.key)
            self._session.add(row)
        row.failures = state.failures
        row.first_failure_at = state.first_failure_at
        row.locked_until = state.locked_until
        self._session.flush()

    def delete(self, key: str) -> None:
        self._session.execute(delete(AuthThrottleRow).where(AuthThrottleRow.key == key))

    def purge(self, now: datetime, counted_since: datetime) -> int:
        result = self._session.execute(
            delete(AuthThrottleRow).where(
                or_(
                    AuthThrottleRow.locked_until <= now,
                    and_(
                        AuthThrottleRow.locked_until.is_(None),
                        AuthThrottleRow.first_failure_at < counted_since,
                    ),
                )
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


class SqlAuditReader:
    def __init__(self, session: Session) -> None:
        self._session = session

    def page(self, query: AuditQuery) -> list[AuditRecord]:
        q = select(AuditEventRow).where(
            AuditEventRow.chain == query.chain, AuditEventRow.seq > query.after_seq
        )
        if query.subject_id is not None:
            q = q.where(AuditEventRow.subject_id == query.subject_id)
        if query.action is not None:
            q = q.where(AuditEventRow.action == query.action)
        if query.since is not None:
            q = q.where(AuditEventRow.occurred_at >= query.since)
        if query.until is not None:
            q = q.where(AuditEventRow.occurred_at < query.until)
        rows = self._session.scalars(q.order_by(AuditEventRow.seq).limit(query.limit)).all()
        return [row_to_record(r) for r in rows]

    def head(self, chain: str) -> tuple[int, str] | None:
        return chain_head(self._session, chain)

    def records(self, chain: str) -> Iterator[AuditRecord]:
        return iter_chain(self._session, chain)
