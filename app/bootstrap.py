"""The composition root: builds the engine, the key service and the unit-of-work factory
from settings. Nothing here runs at import time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.adapters.clock import FileOffsetClock, SystemClock
from app.adapters.crypto.keyring import Keyring, settings_keyring
from app.adapters.crypto.secrets_hash import Argon2Hasher
from app.adapters.db.engine import (
    make_engine,
    make_read_session_factory,
    make_session_factory,
)
from app.adapters.db.idempotency import IdempotencyGuard
from app.adapters.db.keystore import KeyringLoader, KeyService
from app.adapters.db.uow import SqlUnitOfWork
from app.adapters.logs import request_id_var
from app.domain.audit import Actor
from app.settings import Settings


@dataclass
class Container:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    keys: KeyService
    hasher: Argon2Hasher
    clock: SystemClock | FileOffsetClock = field(default_factory=SystemClock)
    read_session_factory: sessionmaker[Session] | None = None

    def __post_init__(self) -> None:
        if self.read_session_factory is None:
            self.read_session_factory = make_read_session_factory(self.session_factory)

    def uow(
        self,
        actor: Actor,
        request_id: str | None = None,
        idempotency: IdempotencyGuard | None = None,
    ) -> SqlUnitOfWork:
        if request_id is None:
            request_id = request_id_var.get()
        return SqlUnitOfWork(
            self.session_factory, self.keys, actor, request_id, idempotency, self.clock
        )

    def read_uow(self, actor: Actor) -> SqlUnitOfWork:
        """A unit of work for one read and no change (autocommit on PostgreSQL): it must not
        write, since its statements are not one transaction."""
        assert self.read_session_factory is not None
        return SqlUnitOfWork(
            self.read_session_factory, self.keys, actor, request_id_var.get(), None, self.clock
        )

    @staticmethod
    def system_actor(component: str) -> Actor:
        return Actor(actor_id=f"system:{component}", role="system")

    def dispose(self) -> None:
        self.engine.dispose()


def bootstrap(
    settings: Settings,
    *,
    engine: Engine | None = None,
    session_factory: sessionmaker[Session] | None = None,
    load_keys: Callable[[], Keyring] | None = None,
    hasher: Argon2Hasher | None = None,
) -> Container:
    engine = engine or make_engine(settings.database_url)
    return Container(
        settings=settings,
        engine=engine,
        session_factory=session_factory or make_session_factory(engine),
        keys=KeyService(KeyringLoader(load_keys or (lambda: settings_keyring(settings)))),
        hasher=hasher or Argon2Hasher(),
        clock=FileOffsetClock(settings.simulation_clock_file)
        if settings.simulation_clock_file is not None
        else SystemClock(),
    )
