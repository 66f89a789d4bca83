"""Run Alembic from the code (the CLI and the tests), and tell whether a database is at head."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from app.adapters.paths import project_root


def alembic_config() -> Config:
    root = project_root()
    ini = root / "alembic.ini"
    if not ini.exists():
        raise FileNotFoundError(f"{ini} not found: run from a checkout or the service image")
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", str(root / "migrations"))
    return cfg


def upgrade(bind: Engine | Connection, revision: str = "head") -> None:
    cfg = alembic_config()
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    else:
        cfg.attributes["connection"] = bind
        command.upgrade(cfg, revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()
