"""`iwrs kits`: a study's kit list and the initial shipments to its sites.

How many kits: for each depot and kit type, the sum over the depot's sites of the type's
initial quantity plus 3 times its resupply level (`app.services.supply.RESUPPLY_ROUNDS`),
each type's total rounded up to whole lots of `supply.kits_per_lot` of the study definition.
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
    """Mark expired the kits past their expiry date (run daily), resupplying sites as needed."""
    from app.services.supply import expire_kits

    with container() as c:
        expired = expire_kits(c.uow(operator()), study)
    if not expired:
        out.print("no kit has expired")
    for place, numbers in expired.items():
        out.print(f"{place}: {len(numbers)} kits expired")
