"""Alembic environment: the URL comes from the caller (app.adapters.db.migrate) or from
IWRS_DATABASE_URL; SQLite migrations run in batch mode."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from app.adapters.db.engine import make_engine
from app.adapters.db.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.attributes.get("url")
    if url is None:
        from app.settings import Settings

        url = Settings().database_url
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `iwrs db upgrade`")
run_migrations_online()
