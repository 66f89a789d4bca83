"""`iwrs enrolment`: caps on randomized subjects (a warning threshold and a hard cap) by
study, country, site or stratum, and the enrolment status. Counts only, never by arm."""

from __future__ import annotations

import typer

from app.adapters.cli.common import container, fail, operator, out

app = typer.Typer(help="Enrolment caps and status (counts of randomized subjects).")


@app.command("cap")
def cap(
    study: str = typer.Option(..., "--study", help="the study slug, e.g. iris-7a"),
    scope: str = typer.Option(..., "--scope", help="study, country, site or stratum"),
    target: str = typer.Option(
        "",
        "--target",
        help='"" for the study; FR; FR01; shock=yes|age=ge65 or FR01|shock=yes|age=ge65',
    ),
    warning: int = typer.Option(None, "--warning", help="warning threshold (audited once)"),
    hard_cap: int = typer.Option(None, "--cap", help="hard cap on randomized subjects"),
    clear: bool = typer.Option(False, "--clear", help="remove the cap of that scope and target"),
    reason: str = typer.Option(None, "--reason", help="why (kept in the audit trail)"),
) -> None:
    """Set, replace or clear an enrolment cap (audited)."""
    from app.services.enrolment import set_cap

    if clear and (warning is not None or hard_cap is not None):
        fail("--clear takes no --warning nor --cap")
    if not clear and warning is None and hard_cap is None:
        fail("give --warning, --cap or both (or --clear)")
    with container() as c:
        status = set_cap(c.uow(operator()), None, study, scope, target, warning, hard_cap, reason)
    where = status.cap.scope.value + (f" {status.cap.target}" if status.cap.target else "")
    if clear:
        out.print(f"{study}: cap of {where} cleared ({status.randomized} randomized)")
        return
    out.print(
        f"{study}: cap of {where}: warning at {status.cap.warning_at or '-'}, "
        f"cap {status.cap.cap or '-'}; {status.randomized} randomized ({status.state})"
    )


@app.command("show")
def show(
    study: str = typer.Option(..., "--study", help="the study slug, e.g. iris-7a"),
) -> None:
    """The randomized subjects by site, country and stratum, the sites' state and the caps."""
    from app.services.enrolment import enrolment_status

    with container() as c:
        status = enrolment_status(c.uow(operator()), None, study)
    out.print(f"{status.study} ({status.mode}): {status.randomized} randomized")
    for site in status.sites:
        state = "active" if site.active else "inactive"
        enrols = "open" if site.enrolment_open else "closed"
        out.print(
            f"  {site.code} ({site.country}) {state}, enrolment {enrols}: "
            f"{site.randomized} randomized"
        )
    for country, count in status.by_country.items():
        out.print(f"  country {country}: {count}")
    for stratum, count in status.by_stratum.items():
        out.print(f"  stratum {stratum}: {count}")
    for found in status.caps:
        where = found.cap.scope.value + (f" {found.cap.target}" if found.cap.target else "")
        out.print(
            f"  cap of {where}: warning at {found.cap.warning_at or '-'}, "
            f"cap {found.cap.cap or '-'}; {found.randomized} randomized ({found.state})"
        )
