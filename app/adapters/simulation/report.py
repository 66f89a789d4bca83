"""The simulation's tables (rich), figures (JSON) and charts (PNG, matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from app.adapters.simulation.runner import Results, balance_rows, latency_rows


def summary(results: Results) -> dict[str, Any]:
    studies = sorted(results.enrolled_by_day)
    return {
        "days": results.days,
        "randomized": {s: results.enrolled_by_day[s][-1] for s in studies},
        "balance": [
            {"study": study, "stratum": stratum, "arms": counts}
            for study, stratum, counts in balance_rows(results)
        ],
        "supply": {
            s: {
                "shipments_received": results.shipments_received[s],
                "kits_received": results.kits_received[s],
                "kits_damaged": results.kits_damaged[s],
                "kits_dispensed": results.kits_dispensed[s],
                "visits_dispensed": results.visits_dispensed[s],
                "stock_outs": results.stock_outs[s],
                "missed_visits": results.missed_visits[s],
                "discontinued": results.discontinued[s],
            }
            for s in studies
        },
        "later_visits": {
            s: {
                "attempted": results.later_visits[s],
                "refused": results.later_visits_refused[s],
                "refusal_rate": round(results.later_refusal_rate(s), 4),
            }
            for s in studies
        },
        # The API counts expired kits at sites only: a depot's inventory is not exposed.
        "expiry_waste": {
            s: {
                "expired_at_sites": results.expired_at_sites(s),
                "expired_at_depots": None,
                "left_at_sites": results.left_at_sites(s),
            }
            for s in studies
        },
        "life": {
            s: {
                "screen_failed": results.screen_failed[s],
                "rescreened": results.rescreened[s],
                "missed_visits": results.missed_visits[s],
                "held_doses": results.held_doses[s],
                "stratum_corrections": results.stratum_corrections[s],
                "sites_closed_to_enrolment": results.closed_sites.get(s, []),
                "refused_at_closed_site": results.refused_at_closed_site[s],
            }
            for s in studies
        },
        "end_states": {s: dict(sorted(results.end_states.get(s, {}).items())) for s in studies},
        "discontinuation_reasons": {
            s: dict(sorted(results.end_reasons.get(s, {}).items())) for s in studies
        },
        "unblinded": results.unblinded,
        "latency_ms": [
            {
                "endpoint": e,
                "calls": n,
                "p50": round(p50, 1),
                "p99": round(p99, 1),
                "max": round(m, 1),
            }
            for e, n, p50, p99, m in latency_rows(results)
        ],
        "errors": dict(results.errors),
    }


def print_tables(results: Results, console: Console) -> None:
    if not console.is_terminal:
        console = Console(width=160, soft_wrap=True)
    figures = summary(results)
    arms = sorted({arm for row in figures["balance"] for arm in row["arms"]})
    balance = Table(title="Balance by stratum and arm (from the statistician's pooled export)")
    for column in ("study", "stratum", *arms, "total"):
        balance.add_column(
            column, justify="right" if column in arms or column == "total" else "left"
        )
    totals: dict[str, dict[str, int]] = {}
    for row in figures["balance"]:
        counts = [row["arms"].get(arm, 0) for arm in arms]
        balance.add_row(row["study"], row["stratum"], *map(str, counts), str(sum(counts)))
        study_total = totals.setdefault(row["study"], dict.fromkeys(arms, 0))
        for arm, n in zip(arms, counts, strict=True):
            study_total[arm] += n
    for study, by_arm in sorted(totals.items()):
        balance.add_row(
            study,
            "all strata",
            *(str(by_arm[a]) for a in arms),
            str(sum(by_arm.values())),
            style="bold",
        )
    console.print(balance)

    supply = Table(title="Supply")
    columns = [
        "shipments_received",
        "kits_received",
        "kits_dispensed",
        "visits_dispensed",
        "kits_damaged",
        "stock_outs",
        "missed_visits",
        "discontinued",
    ]
    supply.add_column("study")
    for column in columns:
        supply.add_column(column.replace("_", " "), justify="right")
    for study, values in figures["supply"].items():
        supply.add_row(study, *(str(values[c]) for c in columns))
    console.print(supply)

    later = Table(title="Later visits (after the first) and expiry waste")
    for column in (
        "study",
        "later visits",
        "refused for supply",
        "refusal rate",
        "kits expired at sites",
        "kits left at sites",
    ):
        later.add_column(column, justify="left" if column == "study" else "right")
    for study, values in figures["later_visits"].items():
        later.add_row(
            study,
            str(values["attempted"]),
            str(values["refused"]),
            f"{values['refusal_rate']:.2%}",
            str(figures["expiry_waste"][study]["expired_at_sites"]),
            str(figures["expiry_waste"][study]["left_at_sites"]),
        )
    console.print(later)
    console.print(
        "expiry waste at depots: not measured (the API exposes no depot inventory); "
        "a later visit counts as refused once, however many days it was retried"
    )

    life = Table(title="A trial's life at the sites")
    life_columns = [
        "screen_failed",
        "rescreened",
        "missed_visits",
        "held_doses",
        "stratum_corrections",
        "sites_closed_to_enrolment",
        "refused_at_closed_site",
    ]
    life.add_column("study")
    for column in life_columns:
        life.add_column(column.replace("_", " "), justify="right")
    for study, values in figures["life"].items():
        life.add_row(
            study,
            *(
                ", ".join(values[c]) or "-" if isinstance(values[c], list) else str(values[c])
                for c in life_columns
            ),
        )
    console.print(life)

    states = sorted({state for by in figures["end_states"].values() for state in by})
    ended = Table(title="How the subjects ended (each subject's status read back from the API)")
    ended.add_column("study")
    for state in (*states, "total"):
        ended.add_column(state.replace("_", " "), justify="right")
    ended.add_column("discontinuation reasons")
    for study, by_state in figures["end_states"].items():
        reasons = figures["discontinuation_reasons"][study]
        ended.add_row(
            study,
            *(str(by_state.get(state, 0)) for state in states),
            str(sum(by_state.values())),
            ", ".join(f"{reason} {n}" for reason, n in reasons.items()) or "-",
        )
    console.print(ended)

    latency = Table(title="Latency by endpoint (client side, ms)")
    for column in ("endpoint", "calls", "p50", "p99", "max"):
        latency.add_column(column, justify="left" if column == "endpoint" else "right")
    for row in figures["latency_ms"]:
        latency.add_row(
            row["endpoint"], str(row["calls"]), str(row["p50"]), str(row["p99"]), str(row["max"])
        )
    console.print(latency)
    console.print(f"emergency unblindings: {', '.join(results.unblinded) or 'none'}")


def write_plots(results: Results, folder: Path) -> list[Path]:
    """Enrollment and stock over time, as PNG files."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install -e '.[sim]'") from None
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for study, series in sorted(results.enrolled_by_day.items()):
        ax.plot(range(len(series)), series, label=study)
    ax.set_xlabel("simulated day")
    ax.set_ylabel("subjects randomized")
    ax.set_title("Enrollment")
    ax.legend()
    fig.tight_layout()
    written.append(folder / "enrollment.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    for site, series in sorted(results.stock_by_day.items()):
        ax.plot(range(len(series)), series, label=site)
    ax.set_xlabel("simulated day")
    ax.set_ylabel("kits available at the site")
    ax.set_title("Site stock (all kit types together)")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    written.append(folder / "stock.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written
