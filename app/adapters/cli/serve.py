"""`iwrs serve` and `iwrs quickstart`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from app.adapters.cli.common import container, fail, load_settings, operator, out

if TYPE_CHECKING:
    from rich.console import Console

    from app.bootstrap import Container


def preflight() -> None:
    """Refuse to start when the keys are missing or the database is not at head."""
    from app.adapters.cli.keys import check_study_keys
    from app.adapters.db import migrate

    with container() as c:
        keyring = c.keys.keyring()
        with c.engine.connect() as conn:
            at = migrate.current_revision(conn)
        if at != migrate.head_revision():
            fail(f"the database is at {at or 'no revision'}; run `iwrs db upgrade` first")
        unopened = [k for k in check_study_keys(c.settings, keyring.keks) if not k.opened_by]
        if unopened:
            fail(
                "the key-encryption key does not open every study's data key",
                *(
                    f"{k.study} (data key v{k.dek_version}, wrapped by {k.kek_id})"
                    for k in unopened
                ),
            )


REQUEST_LINE_BYTES = 8 * 1024


def run_server(host: str, port: int, workers: int) -> None:
    import uvicorn

    from app.adapters.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        "app.adapters.api.asgi:factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        # The h11 parser's cap on a request's head: the headers' limit and a request line
        # (the app refuses past the limit itself, with 431, whichever parser runs).
        h11_max_incomplete_event_size=settings.max_header_bytes + REQUEST_LINE_BYTES,
    )


def serve(
    host: str | None = typer.Option(None, help="default: IWRS_HOST"),
    port: int | None = typer.Option(None, help="default: IWRS_PORT"),
    workers: int | None = typer.Option(None, help="server worker processes (IWRS_WORKERS)"),
) -> None:
    """Start the API (after checking keys and migrations)."""
    settings = load_settings()
    preflight()
    run_server(host or settings.host, port or settings.port, workers or settings.workers)


def _lists_and_kits(c: Container, slug: str, say: Console = out) -> None:
    """A fresh study gets its randomization list and its kits (initial shipments sent)."""
    from app.services.randomization import generate_list
    from app.services.supply import KitsAlreadyGenerated, generate_kits

    uow = c.uow(operator())
    with uow:
        has_list = uow.lists.active(slug, uow.studies.mode(slug)) is not None
    if not has_list:
        generated = generate_list(c.uow(operator()), operator().actor_id, slug)
        say.print(f"study {slug}: {generated.mode} list generated ({generated.slots} slots)")
    try:
        kits = generate_kits(c.uow(operator()), slug)
        say.print(f"study {slug}: {kits.kits} kits, {len(kits.shipments)} initial shipments")
    except KitsAlreadyGenerated:
        pass


def quickstart(
    no_serve: bool = typer.Option(False, "--no-serve", help="prepare everything, do not serve"),
    sandbox: bool = typer.Option(
        False,
        "--sandbox",
        help="a UAT sandbox for integrators: studies in uat mode, one API client per role, "
        "the initial shipments received; prints the credentials and a first curl session",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="with --sandbox: print only the credentials as JSON on stdout (progress on stderr)",
    ),
) -> None:
    """On a fresh checkout: create keys, migrate, load the example studies, serve; with
    --sandbox, a UAT sandbox for integrators (app/adapters/cli/sandbox.py)."""
    from app.adapters.cli import sandbox as sandbox_setup
    from app.adapters.cli.common import err
    from app.adapters.crypto.keyring import ACTIVE_FILE, init_keys
    from app.adapters.db import migrate
    from app.adapters.paths import studies_dir
    from app.adapters.studyfiles.codec import read_study_file
    from app.services.studies import load_study

    if as_json and not sandbox:
        fail("--json goes with --sandbox")
    say = err if as_json else out
    settings = load_settings()
    if (settings.keys_dir / ACTIVE_FILE).exists():
        say.print(f"keys: using the existing keys in {settings.keys_dir}/")
    else:
        kid = init_keys(settings.keys_dir)
        say.print(f"keys: created key-encryption key {kid} in {settings.keys_dir}/")
    with container(settings) as c:
        migrate.upgrade(c.engine)
        say.print(f"database: {c.engine.url.render_as_string(hide_password=True)} migrated")
        slugs: list[str] = []
        for path in sorted(studies_dir().glob("*.toml")):
            study, document, sha = read_study_file(path)
            result = load_study(c.uow(operator()), study, document, sha)
            state = "loaded" if result.created else ("updated" if result.changed else "up to date")
            say.print(f"study {result.slug}: {state} from {path.name}")
            slugs.append(result.slug)
        if sandbox:
            sandbox_setup.prepare_modes(c, slugs)
        for slug in slugs:
            _lists_and_kits(c, slug, say)
        box = sandbox_setup.setup(c, slugs) if sandbox else None
    base = f"http://{settings.host}:{settings.port}"
    say.print(f"API docs: {base}/docs   health: {base}/health   studies: {base}/api/v1/studies")
    if box is None:
        say.print(
            "an API client: iwrs clients create --study iris-7b --role edc --name us-edc; "
            "a person: iwrs users create --study iris-7a --role investigator --site FR01 "
            "--email ...; a sandbox for integrators: iwrs quickstart --sandbox"
        )
    elif as_json:
        print(box.as_json(), flush=True)
    else:
        sandbox_setup.print_text(box, out)
    if not no_serve:
        run_server(settings.host, settings.port, settings.workers)
