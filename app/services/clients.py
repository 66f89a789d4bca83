"""API clients: create, list, disable, rotate a secret, and authenticate for a token."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from app.domain.access import Principal
from app.domain.audit import AuditEvent
from app.domain.clients import (
    AuthenticationFailed,
    Client,
    InvalidGrant,
    Throttled,
    ThrottleState,
    after_failure,
    failure_delay,
)
from app.domain.errors import NotFound
from app.domain.roles import Role
from app.services.ports import SecretHasher, UnitOfWork


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    client: Client
    secret: str  # shown once, never stored


def _grant_events(action: str, client: Client, after: dict[str, object]) -> list[AuditEvent]:
    """One event in each granted study's chain (or the system chain for global clients)."""
    studies = sorted(client.studies) if client.studies is not None else [None]
    return [
        AuditEvent(
            action=action,
            entity_type="client",
            entity_id=client.client_id,
            study=study,
            after=after,
        )
        for study in studies
    ]


def create_client(
    uow: UnitOfWork,
    hasher: SecretHasher,
    *,
    name: str,
    role: Role,
    studies: Sequence[str],
    sites: Sequence[str],
) -> IssuedSecret:
    """Create a client granted those studies (and, for site roles, sites); audited. An admin
    client given no study is granted every study; given some, those."""
    if role is not Role.ADMIN and not studies:
        raise InvalidGrant(f"a {role.value} client needs at least one --study")
    if sites and not role.site_scoped:
        raise InvalidGrant(f"a {role.value} client is not scoped to sites; omit --site")
    if role.site_scoped and not sites:
        raise InvalidGrant(f"a {role.value} client needs at least one --site")
    with uow:
        if uow.clients.get_by_name(name) is not None:
            raise InvalidGrant(f"a client named {name!r} exists already")
        site_grants: dict[str, frozenset[str]] = {}
        for slug in dict.fromkeys(studies):
            stored = uow.studies.get(slug)
            if stored is None:
                raise InvalidGrant(f"unknown study {slug!r}")
            codes = {s.code for s in stored.study.sites}
            if role.site_scoped:
                site_grants[slug] = frozenset(s for s in sites if s in codes)
        for site in sites:
            if not any(site in granted for granted in site_grants.values()):
                raise InvalidGrant(f"site {site!r} is not a site of {', '.join(studies)}")
        for slug, granted in site_grants.items():
            if not granted:
                raise InvalidGrant(f"none of the sites given belongs to study {slug!r}")
        secret = secrets.token_urlsafe(32)
        client = Client(
            client_id="c_" + secrets.token_hex(10),
            name=name,
            role=role,
            studies=None if role is Role.ADMIN and not studies else frozenset(studies),
            sites=site_grants,
            secret_hash=hasher.hash(secret),
        )
        uow.clients.add(client)
        for event in _grant_events(
            "client.created",
            client,
            {
                "name": name,
                "role": role.value,
                "sites": sorted(s for g in site_grants.values() for s in g),
            },
        ):
            uow.record(event)
        uow.commit()
        stored_client = uow.clients.get(client.client_id)
    assert stored_client is not None
    return IssuedSecret(stored_client, secret)


def list_clients(uow: UnitOfWork) -> list[Client]:
    with uow:
        return uow.clients.list()


def _existing(uow: UnitOfWork, client_id: str) -> Client:
    client = uow.clients.get(client_id, for_update=True)
    if client is None:
        raise NotFound(f"no client {client_id!r}")
    return client


def disable_client(uow: UnitOfWork, client_id: str, reason: str, now: datetime) -> Client:
    """Disable a client: its tokens stop working on their next call."""
    with uow:
        client = _existing(uow, client_id)
        if client.disabled:
            return client
        client = replace(client, disabled_at=now)
        uow.clients.save(client)
        for event in _grant_events("client.disabled", client, {"disabled": True}):
            uow.record(replace(event, reason=reason))
        uow.commit()
    return client


def rotate_secret(uow: UnitOfWork, hasher: SecretHasher, client_id: str) -> IssuedSecret:
    """A new secret, shown once; the old secret and every token issued under it stop."""
    with uow:
        client = _existing(uow, client_id)
        if client.disabled:
            raise InvalidGrant(f"client {client_id!r} is disabled")
        secret = secrets.token_urlsafe(32)
        client = replace(
            client, secret_hash=hasher.hash(secret), secret_version=client.secret_version + 1
        )
        uow.clients.save(client)
        for event in _grant_events(
            "client.secret_rotated", client, {"secret_version": client.secret_version}
        ):
            uow.record(event)
        uow.commit()
    return IssuedSecret(client, secret)


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    client: Client | None
    delay: float  # seconds to wait before answering a failure
    throttle: ThrottleState | None = None  # the count after a failure; None: nothing counted


def authenticate(
    uow: UnitOfWork, hasher: SecretHasher, client_id: str, secret: str, now: datetime
) -> AuthOutcome:
    """Check a client's secret under the throttle. Failures are recorded (and audited) and
    committed; the caller then answers 401 after `delay`, or 429 when locked."""
    key = client_id[:64]
    with uow:
        state = uow.throttle.get(key, for_update=True)
        if state is not None:
            retry = state.retry_after(now)
            if retry is not None:
                raise Throttled(f"too many failed attempts; retry in {retry} s", retry)
        client = uow.clients.get(client_id) if client_id else None
        if client is None:
            hasher.verify_dummy(secret)
            reason = "unknown client"
        elif client.disabled:
            reason = "client disabled"
        elif not hasher.verify(client.secret_hash, secret):
            reason = "wrong secret"
        else:
            if state is not None:
                uow.throttle.delete(key)
            uow.record(
                AuditEvent(
                    action="auth.token_issued",
                    entity_type="client",
                    entity_id=client.client_id,
                    after={"role": client.role.value},
                )
            )
            uow.commit()
            return AuthOutcome(client, 0.0)
        new_state: ThrottleState = after_failure(state, key, now)
        uow.throttle.save(new_state)
        uow.record(
            AuditEvent(
                action="auth.client_locked" if new_state.locked_until else "auth.token_refused",
                entity_type="client",
                entity_id=key,
                reason=reason,
                after={"failures": new_state.failures},
            )
        )
        uow.commit()
    return AuthOutcome(None, failure_delay(new_state.failures), new_state)


def principal_for(client: Client, issued_at: datetime | None) -> Principal:
    return Principal(
        subject=client.client_id,
        role=client.role,
        studies=client.studies,
        sites=client.sites,
        issued_at=issued_at,
    )


def current_client(uow: UnitOfWork, client_id: str, secret_version: int) -> Client:
    """The client behind a valid token, from its current record: a disabled client or a
    rotated secret ends its tokens at once."""
    with uow:
        client = uow.clients.get(client_id)
        # Ended by a commit, not a rollback (where it is a transaction at all): a rollback
        # makes psycopg drop the connection's prepared statements, and every later statement
        # would be parsed and planned again.
        uow.commit()
    if client is None or client.disabled or client.secret_version != secret_version:
        raise AuthenticationFailed("the token's client is no longer valid")
    return client
