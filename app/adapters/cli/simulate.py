"""`iwrs simulate`: both example studies run start to finish through the HTTP API."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer

from app.adapters.cli.common import fail, out


def simulate(
    subjects: int = typer.Option(24, "--subjects", min=1, help="subjects per study"),
    sites: int | None = typer.Option(None, "--sites", min=1, help="sites per study"),
    enrollment_days: int = typer.Option(21, "--enrollment-days", min=1),
    seed: int = typer.Option(7, "--seed", help="the simulation's own randomness"),
    transit_days: int = typer.Option(
        0, "--transit-days", min=0, help="extra days before a shipment in transit is received"
    ),
    type_share: float | None = typer.Option(
        None,
        "--type-share",
        min=0.01,
        max=1,
        help="supply.type_share of both studies (1: no refusal, more kits shipped)",
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", help="default: a SQLite file in a temporary folder"
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="server worker processes"),
    plot: Path | None = typer.Option(None, "--plot", help="write PNG charts to this folder"),
    report: Path | None = typer.Option(None, "--report", help="write the figures as JSON"),
) -> None:
    """Run IRIS-7A and IRIS-7B through a fresh service of its own, day by day, as the EDC,
    the pharmacists, an investigator and the statistician would; print balance, supply and
    latency tables. With more subjects and sites it is a load generator."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from app.adapters.simulation.report import print_tables, summary, write_plots
    from app.adapters.simulation.runner import Simulation
    from app.adapters.simulation.service import OwnService

    with tempfile.TemporaryDirectory(prefix="iwrs-sim-") as tmp:
        service = OwnService(Path(tmp), sites, database_url, workers, out, subjects, type_share)
        out.print("setting up a fresh service (keys, database, studies, lists, kits, clients)")
        try:
            setup = service.start()
        except RuntimeError as exc:
            fail(str(exc))
        try:
            with Progress(
                TextColumn("simulated day {task.completed}/{task.total}"),
                BarColumn(),
                TimeRemainingColumn(),
                console=out,
                transient=False,
            ) as progress:
                task = progress.add_task("days", total=None)

                def advance(done: int, total: int) -> None:
                    progress.update(task, completed=done, total=total)

                results = Simulation(
                    setup, subjects, enrollment_days, seed, advance, transit_days=transit_days
                ).run()
        finally:
            service.stop()
    print_tables(results, out)
    if plot is not None:
        for path in write_plots(results, plot):
            out.print(f"chart: {path}")
    if report is not None:
        report.write_text(json.dumps(summary(results), indent=2) + "\n", encoding="utf-8")
        out.print(f"figures: {report}")
    if results.errors:
        fail(
            "the simulation met unexpected answers",
            *[f"{k}: {v}" for k, v in results.errors.items()],
        )
