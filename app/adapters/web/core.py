"""What every page shares: the session cookie, CSRF, the page dependency that turns a
session into the use cases' Principal, the menu, rendering and security headers.

A page is reached only with an active session (both factors proved), except the login and
enrolment pages. The role check comes from the permission table (`page(action)`), the scope
from the use cases, exactly as for the API. Every POST carries the session's CSRF token in a
hidden field (`csrf_token`); the anonymous forms (login, enrolment) carry a token that must
match a cookie set with the form (double submit), since there is no session yet.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from app.adapters.crypto.totp import Totp
from app.adapters.web.i18n import Language, language, load_catalogs, negotiate
from app.adapters.web.messages import KIT_STATUS, N_
from app.bootstrap import Container
from app.domain.access import Action, Principal
from app.domain.errors import DomainError
from app.domain.roles import Role
from app.domain.study import EligibilityQuestion, Study
from app.domain.users import SessionInvalid, SessionState, WebSession, WebUser
from app.services import users as user_service
from app.services.studies import get_study

SESSION_COOKIE = "iwrs_session"
FORM_COOKIE = "iwrs_form"  # the anonymous forms' CSRF token (double submit)
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}


@dataclass
class WebConfig:
    """Built once by `install`; tests may replace `clock` (idle timeout) or `factor`."""

    templates: Environment
    catalogs: Mapping[str, Any]
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    factor: Totp = field(default_factory=Totp)
    secure_cookies: bool = True


def build_config() -> WebConfig:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "svg"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return WebConfig(templates=env, catalogs=load_catalogs())


def web_config(request: Request) -> WebConfig:
    config: WebConfig = request.app.state.web
    return config


def container_of(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


# --- errors a page dependency raises (rendered by handlers installed in `install`) -------------


class LoginRequired(Exception):
    def __init__(self, next_path: str, expired: bool = False) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.expired = expired


class PageForbidden(Exception):
    """The role may not use this page (the permission table says so)."""


class CsrfRejected(Exception):
    """A POST without the right CSRF token: nothing was done."""


class PageNotFound(Exception):
    """The study (or record) does not exist or is outside the caller's scope."""


# --- the study as a blinded page may show it -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteView:
    code: str
    name: str
    active: bool
    timezone: str


@dataclass(frozen=True, slots=True)
class FactorView:
    code: str
    label: str
    levels: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class StudyView:
    """Only what any role may see: no arm, no ratio, no kit type, no dispensing table."""

    slug: str
    title: str
    protocol: str
    sites: tuple[SiteView, ...]
    factors: tuple[FactorView, ...]
    visits: tuple[str, ...]
    unscheduled: bool = False  # the study allows unscheduled dispensations
    discontinuation_reasons: tuple[str, ...] = ()
    screen_failure_reasons: tuple[str, ...] = ()
    rescreening: bool = False
    eligibility: tuple[EligibilityQuestion, ...] = ()

    @classmethod
    def of(cls, study: Study) -> StudyView:
        return cls(
            slug=study.slug,
            title=study.title,
            protocol=study.protocol,
            sites=tuple(SiteView(s.code, s.name, s.active, s.timezone) for s in study.sites),
            factors=tuple(
                FactorView(f.code, f.label, tuple((lv.code, lv.label) for lv in f.levels))
                for f in study.factors
            ),
            visits=tuple(v.code for v in study.visits),
            unscheduled=study.unscheduled is not None,
            discontinuation_reasons=study.discontinuation_reasons,
            screen_failure_reasons=study.screen_failure_reasons,
            rescreening=study.rescreening,
            eligibility=study.eligibility,
        )

    def site(self, code: str) -> SiteView | None:
        return next((s for s in self.sites if s.code == code), None)


def display_zone(study: StudyView | None, principal: Principal) -> str:
    """A site role's site zone; else the study's zone when all its sites share one; else UTC."""
    if study is None:
        return "UTC"
    allowed = principal.sites_in(study.slug)
    sites = [s for s in study.sites if allowed is None or s.code in allowed]
    zones = sorted({s.timezone for s in sites})
    return zones[0] if len(zones) == 1 else "UTC"


# --- the menu ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MenuItem:
    key: str
    label: str  # a message id
    path: str  # under /ui/studies/{study}
    action: Action


MENU: Sequence[MenuItem] = (
    MenuItem("register", N_("Register a subject"), "/subjects/new", Action.SUBJECT_REGISTER),
    MenuItem("subjects", N_("Find a subject"), "/subjects", Action.SUBJECT_READ),
    MenuItem("due", N_("Due visits"), "/due", Action.SUBJECT_READ),
    MenuItem("kits", N_("Look up a kit"), "/kits", Action.KIT_READ),
    MenuItem("shipments", N_("Shipments"), "/shipments", Action.SHIPMENT_READ),
    MenuItem("inventory", N_("Inventory"), "/inventory", Action.INVENTORY_READ),
    MenuItem("excursion", N_("Temperature excursion"), "/excursions/new", Action.EXCURSION_REPORT),
    MenuItem("excursions", N_("Excursion list"), "/excursions", Action.INVENTORY_READ),
    MenuItem("resolve", N_("Resolve an excursion"), "/excursions/resolve", Action.SUPPLY_MANAGE),
    MenuItem("resupply", N_("Resupply settings"), "/supply-settings", Action.SUPPLY_MANAGE),
    MenuItem("enrolment", N_("Enrolment"), "/enrolment", Action.ENROLMENT_MANAGE),
    MenuItem("unblinding", N_("Emergency unblinding"), "/unblinding", Action.UNBLIND),
    MenuItem("arms", N_("Arms after the lock"), "/arms", Action.ARM_READ),
    MenuItem("qc", N_("List QC"), "/lists/qc", Action.LIST_READ),
    MenuItem("exports", N_("Exports"), "/exports", Action.LIST_READ),
    MenuItem("lock", N_("Lock the study"), "/lock", Action.STUDY_LOCK),
    MenuItem("audit", N_("Audit trail"), "/audit", Action.AUDIT_READ),
)


def menu_for(principal: Principal) -> list[MenuItem]:
    return [item for item in MENU if principal.may(item.action)]


# --- the page context ----------------------------------------------------------------------------


@dataclass
class Page:
    """One request of a logged-in user: who, in which language and zone, in which study."""

    request: Request
    config: WebConfig
    container: Container
    user: WebUser
    session: WebSession
    principal: Principal
    lang: Language
    study: StudyView | None = None

    @property
    def now(self) -> datetime:
        return self.config.clock()

    def uow(self) -> Any:
        return self.container.uow(self.principal.actor)

    @property
    def base(self) -> str:
        return f"/ui/studies/{self.study.slug}" if self.study else "/ui"

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        return render(
            self.config,
            self.lang,
            template,
            status=status,
            page=self,
            user=self.user,
            csrf_token=self.session.csrf_token,
            study=self.study,
            menu=menu_for(self.principal) if self.study else [],
            role_label=role_name(self.user.role, self.lang.gettext),
            **values,
        )

    def redirect(self, path: str) -> RedirectResponse:
        return secured(RedirectResponse(path, status_code=303))


def render(
    config: WebConfig, lang: Language, template: str, *, status: int = 200, **values: Any
) -> HTMLResponse:
    gettext = lang.gettext
    html = config.templates.get_template(template).render(
        _=gettext,
        lang=lang,
        when=lang.when,
        kit_status=lambda value: gettext(KIT_STATUS.get(str(value), str(value))),
        **values,
    )
    return secured(HTMLResponse(html, status_code=status))


R = TypeVar("R", bound=Response)


def secured(response: R) -> R:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def anonymous_language(request: Request, config: WebConfig) -> Language:
    wanted = request.query_params.get("lang")
    return language(
        config.catalogs, negotiate(request.headers.get("accept-language"), wanted), "UTC"
    )


def set_session_cookie(response: Response, config: WebConfig, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        secure=config.secure_cookies,
        samesite="strict",
        path="/",
    )


def clear_session_cookie(response: Response, config: WebConfig) -> None:
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, secure=config.secure_cookies, samesite="strict", path="/"
    )


def form_token(request: Request) -> str:
    """The anonymous form's CSRF token: the cookie's, or a new one (set by `with_form_token`)."""
    return request.cookies.get(FORM_COOKIE) or secrets.token_urlsafe(32)


def with_form_token(response: Response, config: WebConfig, token: str) -> Response:
    response.set_cookie(
        FORM_COOKIE,
        token,
        httponly=True,
        secure=config.secure_cookies,
        samesite="strict",
        path="/ui",
    )
    return response


def same_token(given: object, expected: str | None) -> bool:
    return (
        isinstance(given, str)
        and bool(expected)
        and hmac.compare_digest(given.encode(), (expected or "").encode())
    )


async def check_anonymous_form(request: Request) -> None:
    form = await request.form()
    if not same_token(form.get("csrf_token"), request.cookies.get(FORM_COOKIE)):
        raise CsrfRejected()


def session_hash(request: Request) -> str | None:
    token = request.cookies.get(SESSION_COOKIE)
    return user_service.token_hash(token) if token else None


def _next_path(request: Request) -> str:
    path = request.url.path
    return path if request.method == "GET" else "/ui/"


async def resolve(
    request: Request, states: Sequence[SessionState] = (SessionState.ACTIVE,)
) -> tuple[WebSession, WebUser]:
    hashed = session_hash(request)
    if hashed is None:
        raise LoginRequired(_next_path(request))
    config = web_config(request)
    container = container_of(request)
    try:
        return await run_in_threadpool(
            user_service.resolve_session,
            container.uow(container.system_actor("web")),
            hashed,
            config.clock(),
            states,
        )
    except SessionInvalid:
        raise LoginRequired(_next_path(request), expired=True) from None


def page(action: Action | None = None) -> Callable[[Request], Awaitable[Page]]:
    """The dependency of a page: an active session whose role may do `action`; for a POST,
    the right CSRF token; for a page under /ui/studies/{study}, a study the user may see."""

    async def dependency(request: Request) -> Page:
        session, user = await resolve(request)
        config = web_config(request)
        container = container_of(request)
        principal = user_service.principal_of(user, session)
        if action is not None and not principal.may(action):
            raise PageForbidden()
        if request.method == "POST":
            form = await request.form()
            if not same_token(form.get("csrf_token"), session.csrf_token):
                raise CsrfRejected()
        study = None
        slug = request.path_params.get("study")
        if slug is not None:
            try:
                stored = await run_in_threadpool(
                    get_study, container.uow(principal.actor), slug, principal.studies
                )
            except DomainError:
                raise PageNotFound() from None
            study = StudyView.of(stored.study)
        locale = negotiate(request.headers.get("accept-language"), user.locale)
        lang = language(config.catalogs, locale, display_zone(study, principal))
        return Page(request, config, container, user, session, principal, lang, study)

    dependency.iwrs_web_action = action  # type: ignore[attr-defined]
    return dependency


def login_redirect(next_path: str, expired: bool) -> RedirectResponse:
    target = "/ui/login"
    params = []
    if next_path.startswith("/ui/") and next_path not in ("/ui/login", "/ui/"):
        params.append("next=" + quote(next_path, safe="/"))
    if expired:
        params.append("expired=1")
    if params:
        target += "?" + "&".join(params)
    return RedirectResponse(target, status_code=303)


def role_name(role: Role, gettext: Callable[[str], str]) -> str:
    names = {
        Role.EDC: gettext("EDC system"),
        Role.INVESTIGATOR: gettext("Investigator"),
        Role.PHARMACIST: gettext("Pharmacist"),
        Role.UNBLINDED_STATISTICIAN: gettext("Unblinded statistician"),
        Role.SAFETY_OFFICER: gettext("Safety officer"),
        Role.SUPPLY_MANAGER: gettext("Supply manager"),
        Role.ADMIN: gettext("Administrator"),
        Role.AUDITOR: gettext("Auditor"),
    }
    return names[role]
