"""`iwrs keys`: the key-encryption key and the token signing key."""

from __future__ import annotations

import typer

from app.adapters.cli.common import fail, load_settings, out

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


@app.command("status")
def status() -> None:
    """Say whether the keys are present, private and readable."""
    from app.adapters.crypto.keyring import KeyUnavailable, load_keyring

    settings = load_settings()
    try:
        keyring = load_keyring(settings.keys_dir)
    except KeyUnavailable as exc:
        fail(str(exc))
    out.print(f"keys directory: {settings.keys_dir}")
    out.print(f"active key-encryption key: {keyring.active_kid} ({len(keyring.keks)} known)")
    out.print("token signing key: Ed25519, present")
