"""`iwrs sites`: a site's activation (with its initial shipment) and its enrolment, each an
audited action in one transaction, apart from the study file (see app.services.enrolment)."""

from __future__ import annotations

import typer

from app.adapters.cli.common import container, operator, out

app = typer.Typer(help="Sites: activate, deactivate, close or reopen enrolment (audited).")

STUDY = typer.Option(..., "--study", help="the study slug, e.g. iris-7a")
SITE = typer.Option(..., "--site", help="the site code, e.g. FR04")


def _print(change: object) -> None:
    from app.services.enrolment import SiteChange

    assert isinstance(change, SiteChange)
    state = "active" if change.active else "inactive"
    enrols = "open" if change.enrolment_open else "closed"
    out.print(
        f"{change.study} {change.site}: {state}, enrolment {enrols} "
        f"(definition version {change.definition_version})"
    )
    if change.shipment is not None:
        out.print(
            f"  initial shipment {change.shipment.code}: "
            f"{len(change.shipment.kit_numbers)} kits in transit"
        )
    if change.note:
        out.print(f"  {change.note}")


@app.command("activate")
def activate(
    study: str = STUDY,
    site: str = SITE,
    reason: str = typer.Option(None, "--reason", help="why (kept in the audit trail)"),
) -> None:
    """Activate a site and send its initial shipment (once the kit list exists)."""
    from app.services.enrolment import set_site_active

    with container() as c:
        _print(set_site_active(c.uow(operator()), None, study, site, True, reason))


@app.command("deactivate")
def deactivate(
    study: str = STUDY,
    site: str = SITE,
    reason: str = typer.Option(..., "--reason", help="why (required; audited)"),
) -> None:
    """Deactivate a site: no registration, randomization nor resupply there any more.
    To stop enrolment only, and keep supplying the subjects on treatment, close it."""
    from app.services.enrolment import set_site_active

    with container() as c:
        _print(set_site_active(c.uow(operator()), None, study, site, False, reason))


@app.command("close")
def close(
    study: str = STUDY,
    site: str = SITE,
    reason: str = typer.Option(..., "--reason", help="why (required; audited)"),
) -> None:
    """Close a site to enrolment; its dispensing and resupply go on."""
    from app.services.enrolment import set_site_enrolment

    with container() as c:
        _print(set_site_enrolment(c.uow(operator()), None, study, site, False, reason))


@app.command("reopen")
def reopen(
    study: str = STUDY,
    site: str = SITE,
    reason: str = typer.Option(..., "--reason", help="why (required; audited)"),
) -> None:
    """Reopen a site to enrolment."""
    from app.services.enrolment import set_site_enrolment

    with container() as c:
        _print(set_site_enrolment(c.uow(operator()), None, study, site, True, reason))
