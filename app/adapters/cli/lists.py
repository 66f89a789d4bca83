"""`iwrs lists`: randomization lists (generated from a secret seed, or uploaded)."""

from __future__ import annotations

import typer

from app.adapters.cli.common import container, operator, out

app = typer.Typer(help="Randomization lists: generate, QC.")


@app.command("generate")
def generate(
    study: str = typer.Option(..., "--study", help="the study slug"),
    no_kits: bool = typer.Option(False, "--no-kits", help="lists only, not the kit list"),
) -> None:
    """Generate the study's randomization list (for its current mode) and its kit list."""
    from app.services.randomization import generate_list

    actor = operator()
    with container() as c:
        result = generate_list(c.uow(actor), actor.actor_id, study)
        out.print(
            f"{result.study}: {result.mode} list v{result.version} ({result.method}), "
            f"{result.strata} strata, {result.slots} slots"
        )
        if not no_kits:
            from app.services import supply

            generate_kits = getattr(supply, "generate_kits", None)
            if generate_kits is not None:
                kits = generate_kits(c.uow(actor), study)
                out.print(f"{study}: {kits}")
