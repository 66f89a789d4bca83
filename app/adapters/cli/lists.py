"""`iwrs lists`: randomization lists (generated from a secret seed, or uploaded)."""

from __future__ import annotations

from pathlib import Path

import typer

from app.adapters.cli.common import container, fail, operator, out

app = typer.Typer(help="Randomization lists: generate, QC, upload, extend.")


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
            from app.services.supply import KitsAlreadyGenerated, generate_kits

            try:
                kits = generate_kits(c.uow(actor), study)
            except KitsAlreadyGenerated:
                out.print(f"{study}: kits generated already")
                return
            out.print(f"{study}: {kits.kits} kits in {kits.lots} lots")
            for shipment in kits.shipments:
                out.print(
                    f"  initial shipment {shipment.code} to {shipment.site}: "
                    f"{len(shipment.kit_numbers)} kits in transit"
                )


@app.command("qc")
def qc(
    study: str = typer.Option(..., "--study"),
    as_json: bool = typer.Option(False, "--json", help="the whole report as JSON"),
) -> None:
    """The list QC report: balance, block use, predictability, regeneration from the seed.
    It shows arm counts: for the unblinded statistician only."""
    import json

    from app.services.lists import list_qc, qc_as_dict

    with container() as c:
        report = qc_as_dict(list_qc(c.uow(operator()), study))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    out.print(
        f"{study} {report['mode']} list v{report['version']} ({report['method']}): "
        f"{report['length']} slots in {len(report['strata'])} strata"
    )
    out.print(f"counts by arm: {report['counts']}")
    out.print(f"block sizes used: {report['block_sizes_used']}")
    out.print(
        f"unbalanced blocks: {report['unbalanced_blocks']}; max imbalance: "
        f"{report['max_imbalance']:.3f}; predictability: {report['predictability']:.3f}"
    )
    if report["regenerated_from_seed"]:
        verdict = "matches" if report["matches_seed"] else "DIFFERS from"
        out.print(f"the stored list {verdict} the list its seed regenerates")
        for key in report["differing_strata"]:
            out.print(f"  differs: {key}")
    if report["differing_strata"] or report["unbalanced_blocks"]:
        raise typer.Exit(1)


@app.command("upload")
def upload(
    study: str = typer.Option(..., "--study"),
    file: Path = typer.Argument(..., help="CSV: stratum,sequence,randomization_number,arm,block"),
) -> None:
    """Validate and load a statistician's list; every problem is reported by line."""
    from app.services.lists import upload_list

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}")
    actor = operator()
    with container() as c:
        info = upload_list(c.uow(actor), actor.actor_id, study, text)
    out.print(f"{study}: {info.mode} list v{info.version} loaded from {file}")


@app.command("extend")
def extend(
    study: str = typer.Option(..., "--study"),
    stratum: str = typer.Option(..., "--stratum", help='e.g. "FR01|shock=yes|age=lt65"'),
    slots: int = typer.Option(..., "--slots", min=1),
    reason: str = typer.Option(..., "--reason"),
) -> None:
    """Extend an exhausted (or low) stratum by whole blocks from the same seed; audited."""
    from app.services.lists import extend_stratum

    with container() as c:
        result = extend_stratum(c.uow(operator()), study, stratum, slots, reason)
    out.print(f"{study} {result.stratum}: +{result.added} slots, {result.length} in all")
