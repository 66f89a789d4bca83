"""What every command shares: settings, the operator as actor, and one way to fail."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

from app.domain.audit import Actor

if TYPE_CHECKING:
    from app.bootstrap import Container
    from app.settings import Settings

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, *details: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    for line in details:
        err.print(f"  - {line}", highlight=False, markup=False)
    raise typer.Exit(code)


def operator() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(actor_id=f"cli:{user}", role="operator")


def load_settings() -> Settings:
    from pydantic import ValidationError

    from app.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        fail(
            "bad environment setting",
            *(f"IWRS_{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors()),
        )


@contextmanager
def container(settings: Settings | None = None) -> Iterator[Container]:
    """A container whose database and key errors end the command with one clear message."""
    from sqlalchemy.exc import OperationalError, SQLAlchemyError

    from app.adapters.crypto.envelope import CannotOpen
    from app.adapters.crypto.keyring import KeyUnavailable
    from app.bootstrap import bootstrap
    from app.domain.errors import DomainError

    built = bootstrap(settings or load_settings())
    try:
        yield built
    except OperationalError as exc:
        url = built.engine.url.render_as_string(hide_password=True)
        fail(f"cannot use the database at {url}", str(exc.orig).strip().splitlines()[0])
    except SQLAlchemyError as exc:
        fail("database error", type(exc).__name__)
    except (KeyUnavailable, CannotOpen) as exc:
        fail(str(exc))
    except DomainError as exc:
        problems = getattr(exc, "problems", None) or []
        fail(f"{exc.detail} [{exc.code}]", *[p for p in problems if p != exc.detail])
    finally:
        built.dispose()


def is_tty() -> bool:
    return sys.stdout.isatty()
