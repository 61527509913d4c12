"""The hub website: server-rendered Jinja2 pages over the same services as the API.

Pages: home, search, package (README, versions, solvers, files, dependencies, downloads),
model zoo per task (an SVG chart drawn on the server), user and organisation pages, sign-in
(password or OpenID Connect), API tokens, publishing from git, importing a dataset from a zip and
exporting a dataset version as one (:mod:`web.views.dataset_files`), an admin page, and annotation
projects (the list, a project's page with its fine-tuning panel, the annotation page, the reviewer's page). No front-end build step: static
scripts only, one that copies install lines to the clipboard, one that adds images to a project
by drag and drop, one that sends a dataset's zip, and the annotation page's, which talks to the
JSON routes under ``/projects/NS/NAME/-/`` with the session and the CSRF token
(:mod:`web.views.annotate`), and one that follows a running fine-tune on a project's page
(:mod:`web.views.training`).
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


def routes() -> list[BaseRoute]:
    from web.views import accounts, admin, annotate, catalog, dataset_files, projects, repositories, review, training

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
        Route("/publish/dataset", dataset_files.import_page, methods=["GET"], name="publish_dataset"),
        Route("/publish/dataset", dataset_files.import_archive, methods=["POST"]),
        Route("/projects", projects.projects_page, methods=["GET"], name="projects"),
        Route("/projects", projects.create, methods=["POST"]),
        Route("/projects/{namespace}/{name}", projects.project_page, name="project"),
        Route("/projects/{namespace}/{name}/annotate", annotate.annotate_page, name="annotate"),
        Route("/projects/{namespace}/{name}/review", review.review_page, name="review"),
        Route("/projects/{namespace}/{name}/-/members", projects.members, methods=["POST"]),
        Route("/projects/{namespace}/{name}/-/images", projects.upload, methods=["POST"]),
        Route("/projects/{namespace}/{name}/-/snapshots", projects.snapshot, methods=["POST"]),
        Route("/projects/{namespace}/{name}/-/next", annotate.next_item, methods=["POST"]),
        Route("/projects/{namespace}/{name}/-/items/{item_id:int}", annotate.get_item, methods=["GET"]),
        Route("/projects/{namespace}/{name}/-/items/{item_id:int}/labels", annotate.save_labels, methods=["PUT"]),
        Route("/projects/{namespace}/{name}/-/items/{item_id:int}/lease", annotate.release, methods=["DELETE"]),
        Route("/projects/{namespace}/{name}/-/items/{item_id:int}/image", annotate.image, methods=["GET"]),
        Route("/projects/{namespace}/{name}/-/items/{item_id:int}/review", review.review_item, methods=["POST"]),
        Route("/projects/{namespace}/{name}/-/training", training.training_json, methods=["GET"]),
        Route("/projects/{namespace}/{name}/-/training", training.save_settings, methods=["POST"]),
        Route("/projects/{namespace}/{name}/-/training-jobs", training.queue_now, methods=["POST"]),
        Route("/projects/{namespace}/{name}/-/training-jobs/{job_id:int}/preview.png", training.preview,
              methods=["GET"]),
        Route("/{namespace}", catalog.namespace_page, name="namespace"),
        Route("/{namespace}/{name}", catalog.package_page, name="package"),
        Route("/{namespace}/{name}/v/{version}", catalog.package_page, name="package_version"),
        Route("/{namespace}/{name}/v/{version}/images/{image:path}", catalog.dataset_image, name="dataset_image"),
        Route("/{namespace}/{name}/v/{version}/export/{fmt}.zip", dataset_files.export, name="dataset_export"),
    ]
