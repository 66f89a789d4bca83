"""The administrator's pages for web users: the list, creating a user (role, studies, sites)
with the one-time enrolment code shown once, and disabling a user. Each calls the use case
`iwrs users` calls (app.services.users), which checks the grants and audits the change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.adapters.api.problems import status_for
from app.adapters.web.core import Page, page, role_name
from app.adapters.web.messages import N_, error_message
from app.domain.access import Action
from app.domain.errors import DomainError
from app.domain.roles import Role
from app.domain.users import LOCALES, InvalidUserRequest, WebUser
from app.services import users as user_service
from app.services.studies import list_studies

router = APIRouter(prefix="/ui/users", include_in_schema=False)
Text = Annotated[str, Form(max_length=2000)]
# The role names a person may hold (EDC is a system's role: an API client, not a user).
ROLES = tuple(r for r in Role if r is not Role.EDC)
INVALID = N_(
    "The user could not be created. Check the e-mail address (each is used once) and the "
    "grants: every role but the administrator needs a study, investigators and pharmacists "
    "need a site of that study, and the other roles no site."
)


@dataclass(frozen=True, slots=True)
class UserRow:
    email: str
    role: str
    studies: str
    sites: str
    state: str  # active | pending | disabled
    created_at: object

    @classmethod
    def of(cls, user: WebUser, role: str) -> UserRow:
        if user.disabled:
            state = "disabled"
        elif user.enrolled:
            state = "active"
        else:
            state = "pending"
        studies = "*" if user.studies is None else ", ".join(sorted(user.studies))
        sites = ", ".join(sorted({s for granted in user.sites.values() for s in granted}))
        return cls(user.email, role, studies, sites, state, user.created_at)


@dataclass(frozen=True, slots=True)
class StudyChoice:
    slug: str
    protocol: str
    sites: tuple[str, ...]


def _list_page(ctx: Page, status: int = 200, **values: object) -> Response:
    users = user_service.list_users(ctx.uow())
    rows = [UserRow.of(u, role_name(u.role, ctx.lang.gettext)) for u in users]
    rows.sort(key=lambda r: r.email)
    return ctx.render(
        "users.html",
        status=status,
        users=rows,
        done=ctx.request.query_params.get("done"),
        **values,
    )


def _form_page(ctx: Page, status: int = 200, **values: object) -> Response:
    studies = [
        StudyChoice(s.study.slug, s.study.protocol, tuple(site.code for site in s.study.sites))
        for s in list_studies(ctx.uow(), visible=ctx.principal.studies)
    ]
    roles = [(r.value, role_name(r, ctx.lang.gettext), r.site_scoped) for r in ROLES]
    values.setdefault("values", {})
    return ctx.render(
        "user_new.html",
        status=status,
        studies=studies,
        roles=roles,
        locales=LOCALES,
        **values,
    )


@router.get("")
def users(ctx: Annotated[Page, Depends(page(Action.USER_MANAGE))]) -> Response:
    return _list_page(ctx)


@router.get("/new")
def new_user(ctx: Annotated[Page, Depends(page(Action.USER_MANAGE))]) -> Response:
    return _form_page(ctx)


@router.post("/new")
async def create(
    request: Request, ctx: Annotated[Page, Depends(page(Action.USER_MANAGE))]
) -> Response:
    form = await request.form()
    email = str(form.get("email", "")).strip()[:254]
    role_text = str(form.get("role", ""))
    studies = [str(v) for v in form.getlist("studies")][:50]
    sites = list(dict.fromkeys(str(v) for v in form.getlist("sites")))[:200]
    locale = str(form.get("language", "")) or None
    values = {"email": email, "role": role_text, "studies": studies, "sites": sites}
    values["language"] = locale or ""
    role = next((r for r in ROLES if r.value == role_text), None)
    try:
        if role is None:
            raise InvalidUserRequest("choose a role")
        issued = await run_in_threadpool(
            lambda: user_service.create_user(
                ctx.uow(),
                ctx.container.hasher,
                email=email,
                role=role,
                studies=studies,
                sites=sites,
                now=ctx.now,
                locale=locale,
                within=ctx.principal.studies,
            )
        )
    except DomainError as exc:
        message = (
            ctx.lang.gettext(INVALID)
            if isinstance(exc, InvalidUserRequest)
            else error_message(exc, ctx.lang.gettext)
        )
        return await run_in_threadpool(
            _form_page, ctx, status_for(exc), values=values, error=message
        )
    return ctx.render(
        "user_created.html",
        created=UserRow.of(issued.user, role_name(issued.user.role, ctx.lang.gettext)),
        code=issued.code,
    )


@router.post("/disable")
def disable(
    ctx: Annotated[Page, Depends(page(Action.USER_MANAGE))],
    email: Text = "",
    reason: Text = "",
) -> Response:
    _ = ctx.lang.gettext
    if not reason.strip():
        return _list_page(
            ctx, 422, error=_("Give the reason for disabling %(email)s.") % {"email": email}
        )
    try:
        user_service.disable_user(ctx.uow(), email, reason.strip(), ctx.now)
    except DomainError as exc:
        return _list_page(ctx, status_for(exc), error=error_message(exc, _))
    return ctx.redirect("/ui/users?done=disabled")
