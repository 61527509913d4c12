"""Publish from git: register a repository with the indexer, list the ones you manage, re-index.

The rules (who may register where, which URLs and patterns are accepted, who manages a
repository) are the hub's, in :mod:`hub.services.repositories`; this module only turns the form into
its arguments and its errors into the page.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hub.context import ctx, in_session
from hub.errors import HubError
from hub.services import repositories as registry
from hub.services.accounts import Principal
from web.session import web_principal
from web.templating import render

PAGE = "/publish/git"
FIELDS = ("url", "namespace", "subdir", "tag_pattern", "branch_pattern")
_FIELD_LIMIT = 2000  # longer than anything the registry accepts; keeps a re-rendered form small


def _sign_in_first() -> Response:
    return RedirectResponse(f"/login?next={PAGE}", status_code=303)


def _page_status(error: HubError) -> int:
    # A form re-rendered with its error: refusals and conflicts keep their status; everything
    # else the visitor typed (a refused URL, a bad pattern, an unknown namespace) is a 400.
    return error.status if error.status in (403, 409) else 400


async def publish_git_page(request: Request) -> Response:
    who = await web_principal(request)
    if who.user is None:
        return _sign_in_first()
    notice = None
    for kind in ("registered", "queued"):  # set by the redirects after a registration or a re-index
        value = request.query_params.get(kind, "")
        if value.isascii() and value.isdigit():
            notice = (kind, int(value))
            break
    repositories = await in_session(request, _listing, who)
    return _render(request, repositories, values={"namespace": who.user.name}, notice=notice)


async def _signed_in_form(request: Request) -> tuple[Principal, FormData] | Response:
    """The signed-in visitor and their posted form; or the answer when there is none.

    The CSRF token was checked before this view runs (web.security.CsrfMiddleware).
    """
    who = await web_principal(request)
    if who.user is None:
        return _sign_in_first()
    return who, await request.form()


async def register(request: Request) -> Response:
    posted = await _signed_in_form(request)
    if isinstance(posted, Response):
        return posted
    who, form = posted
    values = _values(form)
    private = form.get("private") == "on"
    hub = ctx(request)
    read_only = hub.settings.read_only

    def work(session: Session) -> int | tuple[HubError, list[dict[str, Any]]]:
        # One unit of work: the registration, or, when it is refused, the listing the form is shown with.
        try:
            if read_only:
                raise HubError("read_only", "this hub is read-only (a mirror); register the repository on its upstream")
            with session.begin_nested():  # a refused registration leaves nothing behind
                repo = registry.register(session, hub.settings, who, url=values["url"],
                                         namespace=values["namespace"] or None, subdir=values["subdir"],
                                         tag_pattern=values["tag_pattern"], branch_pattern=values["branch_pattern"],
                                         private=private)
        except HubError as exc:
            return exc, _listing(session, who)
        assert repo.id is not None
        return repo.id

    done = await in_session(request, work, write=not read_only)
    if isinstance(done, tuple):
        error, repositories = done
        return _render(request, repositories, values={**values, "private": private}, error=error,
                       status=_page_status(error))
    return RedirectResponse(f"{PAGE}?registered={done}", status_code=303)


async def reindex(request: Request) -> Response:
    posted = await _signed_in_form(request)
    if isinstance(posted, Response):
        return posted
    who, _ = posted
    repository_id = request.path_params["repository_id"]

    def work(session: Session) -> None:
        registry.reindex(session, registry.get_repository(session, who, repository_id, manage=True))

    try:
        await in_session(request, work, write=True)
    except HubError as exc:
        title = "Not found" if exc.status == 404 else "Cannot do that"
        return render(request, "error.html", status=exc.status, title=title, message=exc.message)
    return RedirectResponse(f"{PAGE}?queued={repository_id}#repository-{repository_id}", status_code=303)


def _values(form: FormData) -> dict[str, str]:
    # The URL is not stripped of inner characters: the registry refuses spaces and control
    # characters with a clear message, rather than this page quietly changing what was typed.
    return {key: str(form.get(key) or "").strip()[:_FIELD_LIMIT] for key in FIELDS}


def _listing(session: Session, who: Principal) -> list[dict[str, Any]]:
    """The repositories ``who`` manages, as the page shows them."""
    return [registry.document(session, who, repo) for repo in registry.list_managed(session, who)]


def _render(request: Request, repositories: list[dict[str, Any]], *, values: dict[str, Any],
            error: HubError | None = None, notice: tuple[str, int] | None = None, status: int = 200) -> Response:
    if notice is not None and notice[1] not in {doc["id"] for doc in repositories}:
        notice = None  # only news about a repository this visitor manages
    return render(request, "publish_git.html", status=status, values=values, error=error, notice=notice,
                  repositories=repositories, base_url=str(request.base_url).rstrip("/"))
