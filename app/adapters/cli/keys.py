"""`iwrs keys`: the key-encryption key (KEK) and the token signing key.

`rotate` makes a new KEK, re-wraps every study data key under it in one audited
transaction, then names it in `kek.active` and renames each KEK no study uses any more to
`kek-<kid>.key.retired` (see keys/README.md). The data keys do not change, so every sealed
record opens as before.

`reseal` seals again, padded to its kind's fixed size (envelope IWRS2), every secret still
in a legacy envelope (IWRS1, as long as its value): one transaction, one audit event per
study with the counts. Run it once after upgrading; a second run finds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer

from app.adapters.cli.common import container, err, fail, load_settings, operator, out

if TYPE_CHECKING:
    from app.bootstrap import Container
    from app.settings import Settings

app = typer.Typer(help="Key material under the keys directory (never in the database).")


@app.command("init")
def init() -> None:
    """Create the key-encryption key and the token signing key; refuse to overwrite."""
    from app.adapters.crypto.keyring import KeyUnavailable, init_keys

    settings = load_settings()
    try:
        kid = init_keys(settings.keys_dir)
    except KeyUnavailable as exc:
        fail(str(exc))
    out.print(f"created key-encryption key {kid} and token signing key in {settings.keys_dir}/")
    out.print("back up this directory: without it no arm or kit type can ever be read again")


@dataclass(frozen=True)
class Rotation:
    new_kid: str
    old_kids: tuple[str, ...]
    retired: tuple[str, ...]
    kept: tuple[str, ...]  # old KEKs still named by a study key (a concurrent load)
    studies: tuple[str, ...]


def _kids_in_use(c: Container) -> set[str]:
    """Every KEK id the database still names (study keys, users' sealed second factors)."""
    from sqlalchemy import select

    from app.adapters.db.models import StudyKeyRow
    from app.adapters.db.models_web import WebUserRow

    with c.session_factory() as session:
        kids = set(session.scalars(select(StudyKeyRow.kek_id).distinct()))
        users = session.scalars(select(WebUserRow.totp_kek_id).distinct())
        return kids | {kid for kid in users if kid is not None}


def rotate_keys(c: Container) -> Rotation:
    """Rotate the KEK of the container's keys directory (see the module doc).

    Crash-safe in this order: until the database commits, the new key file is unused (and
    removed on failure); until `kek.active` names it, both keys are loaded, so every study
    key opens whichever the database says; an old key is retired only when no study key
    names it."""
    from app.adapters.crypto.keyring import (
        KeyUnavailable,
        activate_kek,
        add_kek,
        discard_kek,
        retire_kek,
    )
    from app.services.blinding import rotate_kek

    keys_dir = c.settings.keys_dir
    current = c.keys.reload_keyring()
    if current.source != "directory":
        raise KeyUnavailable(
            "the key-encryption key comes from IWRS_KEK: rotate it in a keys directory "
            "(see keys/README.md), then set IWRS_KEK and IWRS_KEK_ID to the new key"
        )
    old_kids = tuple(sorted(current.keks))
    new_kid = add_kek(keys_dir)
    try:
        c.keys.reload_keyring()
        rewrapped = rotate_kek(c.uow(operator()), new_kid)
    except BaseException:
        discard_kek(keys_dir, new_kid)
        c.keys.reload_keyring()
        raise
    activate_kek(keys_dir, new_kid)
    in_use = _kids_in_use(c)
    retired = tuple(kid for kid in old_kids if kid not in in_use)
    for kid in retired:
        retire_kek(keys_dir, kid)
    c.keys.reload_keyring()
    return Rotation(
        new_kid=new_kid,
        old_kids=old_kids,
        retired=retired,
        kept=tuple(kid for kid in old_kids if kid in in_use),
        studies=tuple(sorted({k.study for k in rewrapped})),
    )


@app.command("rotate")
def rotate() -> None:
    """New key-encryption key: re-wrap every study's data key under it (one transaction,
    audited), make it active, retire the old one. Restart the service afterwards."""
    settings = load_settings()
    if settings.kek is not None or settings.kek_id is not None:
        fail(
            "the key-encryption key comes from IWRS_KEK; rotate it in a keys directory",
            "see keys/README.md, 'Rotating a key given in the environment'",
        )
    with container(settings) as c:
        done = rotate_keys(c)
    out.print(f"new key-encryption key {done.new_kid} is active")
    out.print(
        f"re-wrapped the data keys of {len(done.studies)} studies: "
        + (", ".join(done.studies) or "none")
    )
    for kid in done.retired:
        out.print(f"retired {kid}: kek-{kid}.key.retired (keep it with the backups it opens)")
    for kid in done.kept:
        err.print(f"[yellow]warning:[/] {kid} still wraps a study key; not retired; rerun")
    out.print("restart the service; back up the keys directory now")


@app.command("reseal")
def reseal() -> None:
    """Seal again, padded to a fixed size, every secret still in a legacy (unpadded)
    envelope, whose length could tell an arm or a kit type: one audited transaction."""
    from app.adapters.crypto.envelope import CannotOpen, TooLongToSeal
    from app.adapters.crypto.keyring import KeyUnavailable
    from app.services.blinding import reseal_legacy

    settings = load_settings()
    with container(settings) as c:
        try:
            done = reseal_legacy(c.uow(operator()))
        except (CannotOpen, KeyUnavailable, TooLongToSeal) as exc:
            fail(f"nothing was re-sealed: {exc}")
    if not done:
        out.print("nothing to re-seal: every sealed value is already padded")
        return
    for study in done:
        counts = ", ".join(f"{n} {column}" for column, n in study.counts.items() if n)
        out.print(f"{study.study}: re-sealed {counts}", highlight=False)
    total = sum(sum(s.counts.values()) for s in done)
    out.print(f"re-sealed {total} envelopes of {len(done)} studies in one transaction, audited")


@dataclass(frozen=True)
class KeyCheck:
    study: str
    dek_version: int
    kek_id: str
    opened_by: tuple[str, ...]  # every KEK (live or retired) that opens it


def check_study_keys(settings: Settings, keks: dict[str, bytes]) -> list[KeyCheck]:
    """Which KEKs open each study data key in the database (raises SQLAlchemyError)."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from app.adapters.crypto.envelope import CannotOpen, unwrap_dek
    from app.adapters.db.engine import make_engine
    from app.adapters.db.models import StudyKeyRow, StudyRow

    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(StudyRow.slug, StudyKeyRow)
                .join(StudyKeyRow, StudyKeyRow.study_id == StudyRow.id)
                .order_by(StudyRow.slug, StudyKeyRow.version)
            ).all()
    finally:
        engine.dispose()
    checks = []
    for slug, row in rows:
        opened = []
        for kid, kek in keks.items():
            try:
                unwrap_dek(kek, row.kek_id, slug, row.wrapped_dek)
            except CannotOpen:
                continue
            opened.append(kid)
        checks.append(KeyCheck(slug, row.version, row.kek_id, tuple(opened)))
    return checks


@app.command("status")
def status() -> None:
    """The keys (source, files and their modes) and which study data keys each KEK opens;
    exit 1 when a key is missing, too open, or a study's data key does not open."""
    from pathlib import Path

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from app.adapters.crypto.keyring import (
        KeyUnavailable,
        file_modes,
        retired_keks,
        settings_keyring,
    )
    from app.adapters.db.engine import normalize_url

    settings = load_settings()
    problems: list[str] = []
    out.print(f"keys directory: {settings.keys_dir}")
    for name, mode in file_modes(settings.keys_dir):
        flag = "" if not mode & 0o077 else "  <- readable by others: chmod 600"
        if flag and not name.endswith(".md"):
            problems.append(f"{name} has mode {mode:o}")
        out.print(f"  {mode:04o}  {name}{flag}", highlight=False)
    try:
        keyring = settings_keyring(settings)
    except KeyUnavailable as exc:
        fail(str(exc), *problems)
    retired = retired_keks(settings.keys_dir) if keyring.source == "directory" else {}
    out.print(f"key-encryption key from the {keyring.source}")
    out.print(f"active key-encryption key: {keyring.active_kid} ({len(keyring.keks)} known)")
    for kid in sorted(keyring.keks):
        out.print(f"  {kid}: {'active' if kid == keyring.active_kid else 'loaded'}")
    for kid in sorted(retired):
        out.print(f"  {kid}: retired (not loaded)")
    out.print("token signing key: Ed25519, present")
    checks: list[KeyCheck] = []
    url = make_url(normalize_url(settings.database_url))
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        out.print("study keys: not checked (no database yet)")
    else:
        try:
            checks = check_study_keys(settings, {**retired, **keyring.keks})
        except SQLAlchemyError as exc:
            out.print(f"study keys: not checked (database: {type(exc).__name__})")
    by_kek: dict[str, list[str]] = {}
    for check in checks:
        name = f"{check.study} (DEK v{check.dek_version})"
        for kid in check.opened_by:
            by_kek.setdefault(kid, []).append(name)
        if check.kek_id not in keyring.keks or check.kek_id not in check.opened_by:
            problems.append(f"{name} is wrapped by {check.kek_id}, which the keyring cannot open")
    for kid in sorted({*keyring.keks, *retired}):
        opens = ", ".join(by_kek.get(kid, [])) or "no study"
        out.print(f"{kid} opens: {opens}", highlight=False)
    if problems:
        fail("the keys are not in order", *problems)
    out.print("the keys are in order")
