"""The `iwrs` command."""

from __future__ import annotations

import typer

from app.adapters.cli import (
    audit,
    clients,
    db,
    enrolment,
    keys,
    kits,
    lists,
    serve,
    simulate,
    sites,
    studies,
    users,
)

app = typer.Typer(
    name="iwrs",
    help="IWRS: randomization, blinding and drug supply for clinical trials.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(keys.app, name="keys")
app.add_typer(db.app, name="db")
app.add_typer(studies.app, name="studies")
app.add_typer(clients.app, name="clients")
app.add_typer(audit.app, name="audit")
app.add_typer(lists.app, name="lists")
app.add_typer(kits.app, name="kits")
app.add_typer(users.app, name="users")
app.add_typer(sites.app, name="sites")
app.add_typer(enrolment.app, name="enrolment")
app.command("serve")(serve.serve)
app.command("quickstart")(serve.quickstart)
app.command("simulate")(simulate.simulate)


@app.command("permissions")
def permissions() -> None:
    """Print the permission table (role -> allowed actions) as Markdown."""
    from app.domain.access import permissions_markdown

    print(permissions_markdown(), end="")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
