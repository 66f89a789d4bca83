"""`iwrs studies`: load and list study definitions."""

from __future__ import annotations

from pathlib import Path

import typer

from app.adapters.cli.common import container, operator, out

app = typer.Typer(help="Study definitions (TOML files; see studies/).")


@app.command("load")
def load(
    files: list[Path] = typer.Argument(..., help="study definition files", exists=False),
) -> None:
    """Load or update study definitions, each in one audited transaction."""
    from app.adapters.studyfiles.codec import read_study_file
    from app.services.studies import load_study

    with container() as c:
        for path in files:
            study, document, sha = read_study_file(path)
            result = load_study(c.uow(operator()), study, document, sha)
            if not result.changed:
                out.print(f"{result.slug}: unchanged (version {result.version})")
            elif result.created:
                out.print(f"{result.slug}: created (version 1, {len(study.sites)} sites)")
            else:
                sections = ", ".join(result.changed_sections)
                out.print(f"{result.slug}: updated to version {result.version} ({sections})")
            if result.activation_kept:
                out.print(
                    f"{result.slug}: kept the stored activation of "
                    f"{', '.join(result.activation_kept)} (the file differs; use "
                    "`iwrs sites activate` or `iwrs sites deactivate`)"
                )


@app.command("list")
def list_() -> None:
    """List the loaded studies."""
    from app.services.studies import list_studies

    with container() as c:
        for stored in list_studies(c.uow(operator()), visible=None):
            s = stored.study
            active = sum(site.active for site in s.sites)
            out.print(
                f"{s.slug}\tv{stored.version}\t{s.protocol}\t{active}/{len(s.sites)} sites active"
            )


@app.command("mode")
def mode(
    study: str = typer.Option(..., "--study"),
    new_mode: str = typer.Argument(None, help="live or uat; omit to print the current mode"),
) -> None:
    """Print or set a study's mode: test (uat) or live lists and subjects."""
    from app.services.studies import set_mode

    with container() as c:
        current = set_mode(c.uow(operator()), study, new_mode)
    out.print(f"{study}: {current}")
