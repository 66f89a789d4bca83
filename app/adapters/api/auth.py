"""The one authorization dependency: a valid bearer token of a live client, whose role the
permission table allows the route's action. Scope (study, site) is applied by the use cases
and queries, so a foreign record is simply not found.

A client's role and grants never change, so after its first call they are kept in memory;
that it is still enabled, with the same secret, is then checked by the first statement of
the request's unit of work (app.adapters.db.caller). A route that opens no unit of work
asks `require(..., verify_now=True)` for a read of its own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from app.adapters.api.deps import get_container
from app.adapters.api.tokens import InvalidToken, TokenClaims, TokenService
from app.adapters.cache import BoundedCache
from app.adapters.db.caller import CallerCheck, caller_check
from app.bootstrap import Container
from app.domain.access import Action, Principal
from app.domain.clients import AuthenticationFailed, Client
from app.domain.errors import DomainError
from app.services.clients import current_client, principal_for

CALLERS_CACHE_SIZE = 4096

bearer = HTTPBearer(auto_error=False, description="an access token from POST /oauth/token")


class Unauthorized(DomainError):
    """No valid bearer token."""

    code = "unauthorized"


class Forbidden(DomainError):
    """The caller's role may not do this."""

    code = "forbidden"


async def get_tokens(request: Request) -> TokenService:
    tokens: TokenService = request.app.state.tokens
    return tokens


async def get_claims(
    tokens: Annotated[TokenService, Depends(get_tokens)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> TokenClaims:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a bearer token is required")
    try:
        return tokens.verify(credentials.credentials)
    except InvalidToken:
        raise Unauthorized("the token is not valid") from None


async def _read_client(container: Container, claims: TokenClaims) -> Client:
    """The client's current record, read now (in a worker thread: it is a database read)."""
    actor = container.system_actor("auth")
    try:
        return await run_in_threadpool(
            current_client, container.read_uow(actor), claims.client_id, claims.secret_version
        )
    except AuthenticationFailed:
        raise Unauthorized("the token is not valid") from None


async def get_principal(
    request: Request,
    container: Annotated[Container, Depends(get_container)],
    claims: Annotated[TokenClaims, Depends(get_claims)],
) -> Principal:
    callers: BoundedCache = request.app.state.callers
    key = (claims.client_id, claims.secret_version)
    client: Client | None = callers.get(key)
    if client is None:
        client = await _read_client(container, claims)
        callers.put(key, client)
    else:
        # Still enabled, with this secret? The request's unit of work reads it first.
        caller_check.set(CallerCheck(claims.client_id, claims.secret_version))
    return principal_for(client, claims.issued_at)


async def get_verified_principal(
    container: Annotated[Container, Depends(get_container)],
    claims: Annotated[TokenClaims, Depends(get_claims)],
) -> Principal:
    """The caller read now, for a route that opens no unit of work."""
    return principal_for(await _read_client(container, claims), claims.issued_at)


def require(action: Action, *, verify_now: bool = False) -> Callable[..., Awaitable[Principal]]:
    """A dependency that yields the principal when its role may perform `action`
    (`verify_now`: the client's record is read at once, for a route that opens no unit of
    work to check it in)."""
    source = get_verified_principal if verify_now else get_principal

    # async: a pure check, run on the event loop rather than in a worker thread. The
    # dependency is a default value: an annotation naming the local `source` would not
    # resolve (annotations are strings here).
    async def dependency(principal: Principal = Depends(source)) -> Principal:
        if not principal.may(action):
            raise Forbidden(f"the {principal.role.value} role may not {action.value}")
        return principal

    dependency.iwrs_action = action  # type: ignore[attr-defined]
    return dependency


def route_action(dependant: Any) -> Action | None:
    """The action a route requires (walking its dependency tree), for docs and tests."""
    for dep in dependant.dependencies:
        action = getattr(dep.call, "iwrs_action", None)
        if action is not None:
            return action  # type: ignore[no-any-return]
        found = route_action(dep)
        if found is not None:
            return found
    return None
