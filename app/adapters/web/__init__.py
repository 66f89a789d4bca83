"""The web pages for people (pharmacists, investigators, statisticians, auditors...), under
/ui: server-rendered (Jinja2), English and French, no front-end build. Each page calls the
same use cases as the API, so no rule lives in a template or a page handler."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from app.adapters.api.problems import STATUS_BY_ERROR
from app.adapters.web.core import (
    STATIC,
    CsrfRejected,
    LoginRequired,
    PageForbidden,
    PageNotFound,
    anonymous_language,
    build_config,
    login_redirect,
    render,
    secured,
    web_config,
)
from app.adapters.web.messages import N_, InvalidInput
from app.adapters.web.routes import (
    arms,
    audit,
    auth,
    enrolment,
    pharmacy,
    statistician,
    subjects,
    unblinding,
    users,
    visits,
)

router = APIRouter(include_in_schema=False)
for _module in (
    auth,
    subjects,
    audit,
    statistician,
    unblinding,
    pharmacy,
    arms,
    users,
    visits,
    enrolment,
):
    router.include_router(_module.router)


def install(app: FastAPI) -> None:
    """Mount the pages, their static files and the handlers of their refusals."""
    STATUS_BY_ERROR[InvalidInput] = 422
    app.state.web = build_config()
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")

    @app.exception_handler(LoginRequired)
    async def _login(_request: Request, exc: LoginRequired) -> Response:
        return secured(login_redirect(exc.next_path, exc.expired))

    def _refusal(request: Request, status: int, message: str) -> Response:
        lang = anonymous_language(request, web_config(request))
        return render(
            web_config(request), lang, "refused.html", status=status, message=lang.gettext(message)
        )

    @app.exception_handler(PageForbidden)
    async def _forbidden(request: Request, _exc: PageForbidden) -> Response:
        return _refusal(
            request, 403, N_("This page is not for your role. Go back to the home page.")
        )

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, _exc: CsrfRejected) -> Response:
        return _refusal(
            request,
            403,
            N_(
                "The form had expired or did not come from this site; nothing was done. "
                "Open the page again and send the form again."
            ),
        )

    @app.exception_handler(PageNotFound)
    async def _not_found(request: Request, _exc: PageNotFound) -> Response:
        return _refusal(request, 404, N_("No such study among yours. Go back to the home page."))
