"""`iwrs db`: migrations."""

from __future__ import annotations

import typer

from app.adapters.cli.common import container, out

app = typer.Typer(help="The database schema (Alembic migrations).")


@app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="target revision")) -> None:
    """Apply the migrations up to REVISION (default: head)."""
    from app.adapters.db import migrate

    with container() as c:
        migrate.upgrade(c.engine, revision)
        with c.engine.connect() as conn:
            at = migrate.current_revision(conn)
        out.print(f"database {c.engine.url.render_as_string(hide_password=True)} at {at}")


@app.command("current")
def current() -> None:
    """Print the database's revision and the code's head."""
    from app.adapters.db import migrate

    with container() as c, c.engine.connect() as conn:
        at = migrate.current_revision(conn)
        head = migrate.head_revision()
        out.print(f"database: {at or 'empty'}; code head: {head}")
        if at != head:
            raise typer.Exit(1)
