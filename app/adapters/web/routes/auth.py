"""Login (password, then TOTP), enrolment (code and password, then TOTP), logout, language,
and the home page listing each study's pages for the user's role."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from app.adapters.web.core import (
    CsrfRejected,
    LoginRequired,
    Page,
    StudyView,
    anonymous_language,
    check_anonymous_form,
    clear_session_cookie,
    container_of,
    form_token,
    menu_for,
    page,
    render,
    resolve,
    same_token,
    secured,
    session_hash,
    set_session_cookie,
    web_config,
    with_form_token,
)
from app.adapters.web.i18n import Language, language, negotiate
from app.adapters.web.messages import error_message
from app.domain.access import Action
from app.domain.clients import Throttled
from app.domain.errors import DomainError
from app.domain.users import LoginFailed, SessionInvalid, SessionState
from app.services import users as user_service
from app.services.studies import list_studies

router = APIRouter(include_in_schema=False)

Text = Annotated[str, Form(max_length=300)]
Secret = Annotated[str, Form(max_length=300)]


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


def _anonymous(request: Request) -> Language:
    return anonymous_language(request, web_config(request))


def _form_page(request: Request, template: str, status: int = 200, **values: object) -> Response:
    config = web_config(request)
    token = form_token(request)
    response = render(
        config,
        _anonymous(request),
        template,
        status=status,
        csrf_token=token,
        lang_query=_lang_query(request),
        **values,
    )
    return with_form_token(response, config, token)


def _lang_query(request: Request) -> str:
    wanted = request.query_params.get("lang")
    return f"?lang={wanted}" if wanted in ("en", "fr") else ""


async def _wait(request: Request, exc: LoginFailed) -> None:
    scale = container_of(request).settings.auth_failure_delay_scale
    await asyncio.sleep(exc.delay * scale)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=303)


@router.get("/ui/login")
async def login_form(request: Request, next: str | None = None, expired: int = 0) -> Response:
    try:
        await resolve(request)
        return secured(RedirectResponse(_safe_next(next), status_code=303))
    except LoginRequired:
        pass
    return _form_page(request, "login.html", next=_safe_next(next), expired=bool(expired))


@router.post("/ui/login")
async def login(
    request: Request,
    email: Text = "",
    password: Secret = "",
    next: Text = "/ui/",
) -> Response:
    await check_anonymous_form(request)
    config = web_config(request)
    container = container_of(request)
    gettext = _anonymous(request).gettext
    try:
        new = await run_in_threadpool(
            user_service.login_password,
            container.uow(container.system_actor("web-login")),
            container.hasher,
            email=email,
            password=password,
            now=config.clock(),
        )
    except LoginFailed as exc:
        await _wait(request, exc)
        return _form_page(
            request,
            "login.html",
            401,
            next=_safe_next(next),
            email=email,
            error=error_message(exc, gettext),
        )
    except Throttled as exc:
        return _form_page(
            request,
            "login.html",
            429,
            next=_safe_next(next),
            email=email,
            error=error_message(exc, gettext),
        )
    target = "/ui/login/code?next=" + quote(_safe_next(next), safe="/")
    target += _lang_query(request).replace("?", "&")
    response = secured(RedirectResponse(target, status_code=303))
    set_session_cookie(response, config, new.token)
    return response


async def _pending(request: Request, state: SessionState) -> Response | tuple[str, Language]:
    """The pending session's CSRF token and the page language, or a redirect to log in."""
    try:
        session, user = await resolve(request, (state,))
    except LoginRequired:
        return secured(RedirectResponse("/ui/login?expired=1", status_code=303))
    config = web_config(request)
    locale = negotiate(request.headers.get("accept-language"), user.locale)
    if request.query_params.get("lang") in ("en", "fr") and user.locale is None:
        locale = str(request.query_params.get("lang"))
    return session.csrf_token, language(config.catalogs, locale)


@router.get("/ui/login/code")
async def code_form(request: Request, next: str | None = None) -> Response:
    pending = await _pending(request, SessionState.SECOND_FACTOR)
    if isinstance(pending, Response):
        return pending
    token, lang = pending
    return render(
        web_config(request),
        lang,
        "login_code.html",
        csrf_token=token,
        next=_safe_next(next),
        lang_query=_lang_query(request),
    )


@router.post("/ui/login/code")
async def login_code(request: Request, code: Secret = "", next: Text = "/ui/") -> Response:
    pending = await _pending(request, SessionState.SECOND_FACTOR)
    if isinstance(pending, Response):
        return pending
    token, lang = pending
    form = await request.form()
    if not same_token(form.get("csrf_token"), token):
        raise CsrfRejected()
    config = web_config(request)
    container = container_of(request)
    hashed = session_hash(request)
    assert hashed is not None
    try:
        new = await run_in_threadpool(
            user_service.login_second_factor,
            container.uow(container.system_actor("web-login")),
            config.factor,
            hashed,
            code,
            config.clock(),
        )
    except (LoginFailed, Throttled) as exc:
        if isinstance(exc, LoginFailed):
            await _wait(request, exc)
        return render(
            config,
            lang,
            "login_code.html",
            status=401,
            csrf_token=token,
            next=_safe_next(next),
            error=error_message(exc, lang.gettext),
            lang_query=_lang_query(request),
        )
    except SessionInvalid:
        return secured(RedirectResponse("/ui/login?expired=1", status_code=303))
    response = secured(RedirectResponse(_safe_next(next), status_code=303))
    set_session_cookie(response, config, new.token)  # a new token: the pending one has ended
    return response


@router.get("/ui/enrol")
async def enrol_form(request: Request) -> Response:
    return _form_page(request, "enrol.html")


@router.post("/ui/enrol")
async def enrol(
    request: Request,
    email: Text = "",
    enrolment_code: Secret = "",
    password: Secret = "",
    password_again: Secret = "",
) -> Response:
    await check_anonymous_form(request)
    config = web_config(request)
    container = container_of(request)
    gettext = _anonymous(request).gettext
    if password != password_again:
        return _form_page(
            request,
            "enrol.html",
            400,
            email=email,
            error=gettext("The two passwords differ. Type the same password twice."),
        )
    try:
        enrolment = await run_in_threadpool(
            lambda: user_service.begin_enrolment(
                container.uow(container.system_actor("web-enrol")),
                container.hasher,
                config.factor,
                email=email,
                code=enrolment_code,
                password=password,
                now=config.clock(),
            )
        )
    except LoginFailed as exc:
        await _wait(request, exc)
        return _form_page(
            request, "enrol.html", 401, email=email, error=error_message(exc, gettext)
        )
    except DomainError as exc:
        status = 429 if isinstance(exc, Throttled) else 400
        return _form_page(
            request, "enrol.html", status, email=email, error=error_message(exc, gettext)
        )
    response = secured(RedirectResponse("/ui/enrol/totp" + _lang_query(request), status_code=303))
    set_session_cookie(response, config, enrolment.session.token)
    return response


def _grouped(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


async def _enrol_totp_page(
    request: Request, token: str, lang: Language, status: int = 200, error: str | None = None
) -> Response:
    config = web_config(request)
    container = container_of(request)
    hashed = session_hash(request)
    assert hashed is not None
    secret, uri = await run_in_threadpool(
        user_service.pending_enrolment,
        container.uow(container.system_actor("web-enrol")),
        config.factor,
        hashed,
        config.clock(),
    )
    return render(
        config,
        lang,
        "enrol_totp.html",
        status=status,
        csrf_token=token,
        secret=_grouped(secret),
        uri=uri,
        error=error,
        lang_query=_lang_query(request),
    )


@router.get("/ui/enrol/totp")
async def enrol_totp_form(request: Request) -> Response:
    pending = await _pending(request, SessionState.ENROLLING)
    if isinstance(pending, Response):
        return pending
    return await _enrol_totp_page(request, *pending)


@router.post("/ui/enrol/totp")
async def enrol_totp(request: Request, code: Secret = "") -> Response:
    pending = await _pending(request, SessionState.ENROLLING)
    if isinstance(pending, Response):
        return pending
    token, lang = pending
    form = await request.form()
    if not same_token(form.get("csrf_token"), token):
        raise CsrfRejected()
    config = web_config(request)
    container = container_of(request)
    hashed = session_hash(request)
    assert hashed is not None
    try:
        new = await run_in_threadpool(
            user_service.complete_enrolment,
            container.uow(container.system_actor("web-enrol")),
            config.factor,
            hashed,
            code,
            config.clock(),
        )
    except (LoginFailed, Throttled) as exc:
        if isinstance(exc, LoginFailed):
            await _wait(request, exc)
        return await _enrol_totp_page(request, token, lang, 401, error_message(exc, lang.gettext))
    except SessionInvalid:
        return secured(RedirectResponse("/ui/login?expired=1", status_code=303))
    response = secured(RedirectResponse("/ui/", status_code=303))
    set_session_cookie(response, config, new.token)  # a new token: the enrolling one has ended
    return response


@router.post("/ui/logout")
def logout(ctx: Annotated[Page, Depends(page())]) -> Response:
    hashed = session_hash(ctx.request)
    assert hashed is not None
    user_service.logout(ctx.uow(), hashed, ctx.now)
    response = ctx.redirect("/ui/login")
    clear_session_cookie(response, ctx.config)
    return response


@router.post("/ui/language")
def set_language(
    ctx: Annotated[Page, Depends(page())],
    language_choice: Annotated[str, Form(alias="language", max_length=8)] = "",
    back: Text = "/ui/",
) -> Response:
    user_service.set_locale(ctx.uow(), ctx.user.user_id, language_choice or None)
    return ctx.redirect(_safe_next(back))


@router.get("/ui/")
def home(ctx: Annotated[Page, Depends(page())]) -> Response:
    stored = list_studies(ctx.uow(), visible=ctx.principal.studies)
    studies = [(StudyView.of(s.study), menu_for(ctx.principal)) for s in stored]
    return ctx.render(
        "home.html", studies=studies, may_manage_users=ctx.principal.may(Action.USER_MANAGE)
    )
