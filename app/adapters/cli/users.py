"""`iwrs users`: people who use the web pages. An enrolment code is printed once; with it the
user sets a password and enrols a second factor (TOTP) at the first login, at /ui/enrol."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer

from app.adapters.cli.common import container, fail, operator, out
from app.domain.roles import Role

app = typer.Typer(help="Web users (pharmacists, investigators, statisticians, auditors...).")


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        fail(f"unknown role {value!r}", "roles: " + ", ".join(r.value for r in Role))


def _print_code(email: str, code: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"email": email, "enrolment_code": code}))
        return
    out.print(f"email:           {email}", highlight=False)
    out.print(f"enrolment code:  {code}", highlight=False)
    out.print(
        "the code is shown once and stored only as a hash; give it to the user, who enrols "
        "at /ui/enrol within 7 days (password and authenticator app)",
        highlight=False,
    )


@app.command("create")
def create(
    email: str = typer.Option(..., "--email", help="the user's e-mail address (their login)"),
    role: str = typer.Option(..., "--role", help="one of: " + ", ".join(r.value for r in Role)),
    study: list[str] = typer.Option([], "--study", help="a study granted (repeatable)"),
    site: list[str] = typer.Option([], "--site", help="a site granted, for site roles"),
    language: str | None = typer.Option(None, "--language", help="en or fr (default: browser)"),
    as_json: bool = typer.Option(False, "--json", help='print {"email", "enrolment_code"}'),
) -> None:
    """Create a user; the one-time enrolment code is printed once."""
    from app.services.users import create_user

    parsed = _role(role)
    with container() as c:
        issued = create_user(
            c.uow(operator()),
            c.hasher,
            email=email,
            role=parsed,
            studies=study,
            sites=site,
            now=datetime.now(UTC),
            locale=language,
        )
    _print_code(issued.user.email, issued.code, as_json)


@app.command("list")
def list_() -> None:
    """List users with their role, studies, sites and state (never a secret)."""
    from app.services.users import list_users

    with container() as c:
        for user in list_users(c.uow(operator())):
            studies = "*" if user.studies is None else ",".join(sorted(user.studies))
            sites = ",".join(sorted(s for g in user.sites.values() for s in g)) or "-"
            if user.disabled:
                state = "disabled"
            elif user.enrolled:
                state = "active"
            else:
                state = "enrolment pending"
            out.print(
                f"{user.user_id}\t{user.email}\t{user.role.value}\t{studies}\t{sites}\t{state}",
                highlight=False,
            )


@app.command("disable")
def disable(
    email: str = typer.Argument(..., help="the user's e-mail address"),
    reason: str = typer.Option(..., "--reason", help="why (recorded in the audit trail)"),
) -> None:
    """Disable a user: their sessions end at once."""
    from app.services.users import disable_user

    with container() as c:
        user = disable_user(c.uow(operator()), email, reason, datetime.now(UTC))
    out.print(f"{user.email} disabled", highlight=False)


@app.command("reset")
def reset(
    email: str = typer.Argument(..., help="the user's e-mail address"),
    reason: str = typer.Option(..., "--reason", help="why (recorded in the audit trail)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Forget a user's password and second factor (lost phone, forgotten password) and print
    a new enrolment code once; also lifts a lock-out and re-enables a disabled user."""
    from app.services.users import reset_user

    with container() as c:
        issued = reset_user(c.uow(operator()), c.hasher, email, reason, datetime.now(UTC))
    _print_code(issued.user.email, issued.code, as_json)
