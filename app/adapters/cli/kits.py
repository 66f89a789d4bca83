"""`iwrs kits`: a study's kit list and the initial shipments to its sites.

How many kits: for each depot, as many of every kit type (shipments are whole sets): the
sum over the depot's sites of the initial sets plus `supply.resupply_rounds` (3 by default)
times the largest resupply level, each type's total rounded up to whole lots of
`supply.kits_per_lot` of the study definition.
Nothing printed here names a kit type: counts are totals.
"""

from __future__ import annotations

import typer

from app.adapters.cli.common import container, operator, out

app = typer.Typer(help="Kit lists and shipments (blinded: counts, never kit types).")


@app.command("generate")
def generate(
    study: str = typer.Option(..., "--study", help="the study slug, e.g. iris-7a"),
) -> None:
    """Generate the study's kits at its depots and ship each active site its initial kits."""
    from app.services.supply import generate_kits

    with container() as c:
        result = generate_kits(c.uow(operator()), study)
    out.print(f"{result.kits} kits in {result.lots} lots for {result.study}")
    for depot, count in result.kits_by_depot.items():
        out.print(f"  depot {depot}: {count} kits")
    for shipment in result.shipments:
        out.print(
            f"  shipment {shipment.code} to {shipment.site}: "
            f"{len(shipment.kit_numbers)} kits in transit"
        )


@app.command("ship-initial")
def ship_initial(
    study: str = typer.Option(..., "--study", help="the study slug, e.g. iris-7a"),
) -> None:
    """Ship the initial kits to active sites that have had none (a site activated later)."""
    from app.services.supply import send_initial_shipments

    with container() as c:
        shipments = send_initial_shipments(c.uow(operator()), study)
    if not shipments:
        out.print("every active site has had its initial shipment")
    for shipment in shipments:
        out.print(
            f"shipment {shipment.code} to {shipment.site}: "
            f"{len(shipment.kit_numbers)} kits in transit"
        )


@app.command("expire")
def expire(
    study: str = typer.Option(..., "--study", help="the study slug, e.g. iris-7a"),
) -> None:
    """Mark expired the kits past their expiry date (the server's housekeeping runs it)."""
    from app.services.supply import expire_kits

    with container() as c:
        expired = expire_kits(c.uow(operator()), study)
    if not expired:
        out.print("no kit has expired")
    for place, numbers in expired.items():
        out.print(f"{place}: {len(numbers)} kits expired")


@app.command("review")
def review(
    study: str = typer.Option(..., "--study", help="the study slug, e.g. iris-7a"),
) -> None:
    """Run today's resupply review of the study (once a UTC date; the server's housekeeping
    runs it): whole sets shipped to the sites whose stock less their subjects' coming demand
    fell below a trigger."""
    from app.services.resupply import daily_review

    with container() as c:
        shipments = daily_review(c.uow(operator()), study)
    if shipments is None:
        out.print(f"{study} was reviewed today already")
        return
    if not shipments:
        out.print("no site needs a shipment today")
    for shipment in shipments:
        out.print(
            f"shipment {shipment.code} to {shipment.site}: "
            f"{len(shipment.kit_numbers)} kits in transit"
        )
