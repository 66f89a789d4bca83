"""`iwrs clients`: API clients. A secret is printed once, when made, and never again."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer

from app.adapters.cli.common import container, fail, operator, out
from app.domain.roles import Role

app = typer.Typer(help="API clients (EDC systems, the parallel study, site systems...).")


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        fail(f"unknown role {value!r}", "roles: " + ", ".join(r.value for r in Role))


@app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="a unique name, e.g. us-edc"),
    role: str = typer.Option(..., "--role", help="one of: " + ", ".join(r.value for r in Role)),
    study: list[str] = typer.Option([], "--study", help="a study granted (repeatable)"),
    site: list[str] = typer.Option([], "--site", help="a site granted, for site roles"),
    as_json: bool = typer.Option(False, "--json", help='print {"client_id", "client_secret"}'),
) -> None:
    """Create a client; its secret is printed once."""
    from app.services.clients import create_client

    parsed = _role(role)
    with container() as c:
        issued = create_client(
            c.uow(operator()), c.hasher, name=name, role=parsed, studies=study, sites=site
        )
    if as_json:
        print(json.dumps({"client_id": issued.client.client_id, "client_secret": issued.secret}))
        return
    out.print(f"client_id:     {issued.client.client_id}")
    out.print(f"client_secret: {issued.secret}", highlight=False)
    out.print("the secret is shown once and stored only as a hash: keep it now")


@app.command("list")
def list_() -> None:
    """List clients with their role, studies, sites and state (never a secret)."""
    from app.services.clients import list_clients

    with container() as c:
        for client in list_clients(c.uow(operator())):
            studies = "*" if client.studies is None else ",".join(sorted(client.studies))
            sites = ",".join(sorted(s for g in client.sites.values() for s in g)) or "-"
            state = "disabled" if client.disabled else "active"
            out.print(
                f"{client.client_id}\t{client.name}\t{client.role.value}\t{studies}\t{sites}\t{state}"
            )


@app.command("disable")
def disable(
    client_id: str = typer.Argument(...),
    reason: str = typer.Option(..., "--reason", help="why (recorded in the audit trail)"),
) -> None:
    """Disable a client: its tokens stop working at once."""
    from app.services.clients import disable_client

    with container() as c:
        client = disable_client(c.uow(operator()), client_id, reason, datetime.now(UTC))
    out.print(f"{client.client_id} ({client.name}) disabled")


@app.command("rotate-secret")
def rotate(
    client_id: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Give a client a new secret (printed once); the old one and its tokens stop working."""
    from app.services.clients import rotate_secret

    with container() as c:
        issued = rotate_secret(c.uow(operator()), c.hasher, client_id)
    if as_json:
        print(json.dumps({"client_id": issued.client.client_id, "client_secret": issued.secret}))
        return
    out.print(f"client_secret: {issued.secret}", highlight=False)
    out.print("the secret is shown once and stored only as a hash: keep it now")
