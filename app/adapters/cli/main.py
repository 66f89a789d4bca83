"""The `iwrs` command."""

from __future__ import annotations

import typer

from app.adapters.cli import db, keys, serve, studies

app = typer.Typer(
    name="iwrs",
    help="IWRS: randomization, blinding and drug supply for clinical trials.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(keys.app, name="keys")
app.add_typer(db.app, name="db")
app.add_typer(studies.app, name="studies")
app.command("serve")(serve.serve)
app.command("quickstart")(serve.quickstart)


def main() -> None:
    app()
