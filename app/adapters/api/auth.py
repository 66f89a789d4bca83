"""The one authorization dependency: a valid bearer token of a live client, whose role the
permission table allows the route's action. Scope (study, site) is applied by the use cases
and queries, so a foreign record is simply not found."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.adapters.api.deps import get_container
from app.adapters.api.tokens import InvalidToken, TokenService
from app.bootstrap import Container
from app.domain.access import Action, Principal
from app.domain.clients import AuthenticationFailed
from app.domain.errors import DomainError
from app.services.clients import principal_from_token

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


def get_principal(
    container: Annotated[Container, Depends(get_container)],
    tokens: Annotated[TokenService, Depends(get_tokens)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a bearer token is required")
    try:
        claims = tokens.verify(credentials.credentials)
        actor = container.system_actor("auth")
        return principal_from_token(
            container.read_uow(actor), claims.client_id, claims.secret_version, claims.issued_at
        )
    except (InvalidToken, AuthenticationFailed):
        raise Unauthorized("the token is not valid") from None


def require(action: Action) -> Callable[..., Awaitable[Principal]]:
    """A dependency that yields the principal when its role may perform `action`."""

    # async: a pure check, run on the event loop rather than in a worker thread.
    async def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
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
