"""The hub website: server-rendered Jinja2 pages over the same services as the API.

Pages: home, search, package (README, versions, solvers, files, dependencies, downloads),
model zoo per task (an SVG chart drawn on the server), user and organisation pages, sign-in
(password or OpenID Connect), API tokens, publishing from git, and an admin page. No front-end
build step; the only script is a small static file that copies install lines to the clipboard.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def routes() -> list[BaseRoute]:
    from web.views import accounts, admin, catalog, repositories

    return [
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        Route("/", catalog.home, name="home"),
        Route("/search", catalog.search, name="search"),
        Route("/zoo", catalog.zoo, name="zoo"),
        Route("/zoo/{task}", catalog.zoo, name="zoo_task"),
        Route("/login", accounts.login_form, methods=["GET"], name="login"),
        Route("/login", accounts.login, methods=["POST"]),
        Route("/logout", accounts.logout, methods=["POST"], name="logout"),
        Route("/login/oidc/{provider}", accounts.oidc_start, name="oidc_start"),
        Route("/login/oidc/{provider}/callback", accounts.oidc_callback, name="oidc_callback"),
        Route("/settings/tokens", accounts.tokens_page, methods=["GET", "POST"], name="tokens"),
        Route("/admin", admin.admin_page, name="admin"),
        Route("/publish/git", repositories.publish_git_page, methods=["GET"], name="publish_git"),
        Route("/publish/git", repositories.register, methods=["POST"]),
        Route("/publish/git/{repository_id:int}/reindex", repositories.reindex, methods=["POST"],
              name="publish_git_reindex"),
        Route("/{namespace}", catalog.namespace_page, name="namespace"),
        Route("/{namespace}/{name}", catalog.package_page, name="package"),
        Route("/{namespace}/{name}/v/{version}", catalog.package_page, name="package_version"),
        Route("/{namespace}/{name}/v/{version}/images/{image:path}", catalog.dataset_image, name="dataset_image"),
    ]
