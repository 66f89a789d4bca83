"""The schema comes only from migrations, and the models agree with them."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DatabaseError

from app.adapters.db import migrate
from app.adapters.db.engine import make_engine
from app.adapters.db.models import Base
from tests.conftest import FreshDatabases


class TestMigrations:
    def test_models_and_migrations_agree(self, engine: Engine) -> None:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"

    def test_database_is_at_head(self, engine: Engine) -> None:
        with engine.connect() as conn:
            assert migrate.current_revision(conn) == migrate.head_revision()

    def test_downgrade_to_base_and_up_again(
        self, backend: str, fresh_databases: FreshDatabases
    ) -> None:
        eng = make_engine(fresh_databases.create(backend))
        try:
            migrate.upgrade(eng)
            cfg = migrate.alembic_config()
            with eng.begin() as conn:
                cfg.attributes["connection"] = conn
                from alembic import command

                command.downgrade(cfg, "base")
            with eng.connect() as conn:
                assert migrate.current_revision(conn) is None
            migrate.upgrade(eng)
            with eng.connect() as conn:
                assert migrate.current_revision(conn) == migrate.head_revision()
        finally:
            eng.dispose()


class TestAuditIsAppendOnly:
    def _insert_event(self, conn: Connection) -> None:
        conn.execute(
            text(
                "INSERT INTO audit_event (chain, seq, occurred_at, actor_id, actor_role, action,"
                " entity_type, entity_id, prev_hash, hash) VALUES ('t', 1, CURRENT_TIMESTAMP,"
                " 'a', 'r', 'x', 'e', '1', :z, :z)"
            ),
            {"z": "0" * 64},
        )

    @pytest.mark.parametrize(
        "statement", ["UPDATE audit_event SET reason = 'x'", "DELETE FROM audit_event"]
    )
    def test_update_and_delete_are_refused(self, connection: Connection, statement: str) -> None:
        self._insert_event(connection)
        savepoint = connection.begin_nested()
        with pytest.raises(DatabaseError, match="append-only"):
            connection.execute(text(statement))
        savepoint.rollback()


class TestLookupsUseIndexes:
    """Lookups made on every call, on tables that grow to 100,000 rows and more, find their
    rows through an index, not by reading the whole table (they once did: a subject's kits
    were found by scanning every kit of the trial, 20 ms a call at 130,000 kits)."""

    SUBJECT_KITS = "SELECT id FROM kit WHERE dispensation_id = 1"

    def test_a_subjects_kits_are_found_by_index(self, backend: str, connection: Connection) -> None:
        if backend == "postgres":
            connection.execute(text("SET LOCAL enable_seqscan = off"))
            plan = connection.execute(text(f"EXPLAIN {self.SUBJECT_KITS}")).scalars().all()
        else:
            rows = connection.execute(text(f"EXPLAIN QUERY PLAN {self.SUBJECT_KITS}")).all()
            plan = [row[-1] for row in rows]
        assert any("ix_kit_dispensation_id" in line for line in plan), plan

    def test_a_sites_stock_is_read_through_the_site_index(
        self, backend: str, connection: Connection
    ) -> None:
        # The dispensing's stock read names the site alone (its id is the study's own), so
        # it needs no other index, whatever the statistics say.
        from app.adapters.db.supply_repos import _STOCK_AT_SITE

        sql = str(
            _STOCK_AT_SITE.statement.params(place_id=1, statuses=["at_site", "in_transit"]).compile(
                dialect=connection.dialect, compile_kwargs={"literal_binds": True}
            )
        )
        if backend == "postgres":
            connection.execute(text("SET LOCAL enable_seqscan = off"))
            plan = connection.exec_driver_sql(f"EXPLAIN {sql}").scalars().all()
        else:
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
            plan = [row[-1] for row in rows]
        assert any("ix_kit_site_status" in line for line in plan), plan
        assert not any("ix_kit_study_id" in line for line in plan), plan
