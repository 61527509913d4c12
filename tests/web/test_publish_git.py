"""Publish from git in the website, over a real socket on both backends: registering a repository
served by a real ``git daemon``, its last result after a real index run, re-indexing, and the
refusals (CSRF, refused URLs, someone else's namespace or repository, signed-out visitors); and
once in headless Chromium on a phone."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlmodel import select

from hub.db import session_scope
from hub.models import Repository
from tests.conftest import start_hub
from tests.helpers import PASSWORD, LiveHub
from tests.indexer._helpers import SOLVER, jobs, manifest, run_jobs
from tests.indexer.conftest import _indexer_hubs, git_daemon, ihub, make_repo, one_hub, served_root  # noqa: F401
from tests.web.support import Tags, browser, csrf, hidden, sign_in, text

PAGE = "/publish/git"


def signed_in(hub: LiveHub, name: str) -> httpx.Client:
    hub.create_user(name)
    client = browser(hub)
    assert sign_in(client, name).status_code == 303
    return client


def register(client: httpx.Client, url: str, **fields: str) -> httpx.Response:
    """Load the form and submit it as a browser would, with its CSRF token."""
    page = client.get(PAGE)
    assert page.status_code == 200, page.text
    data = {"csrf_token": csrf(page.text), "url": url, "namespace": input_value(page.text, "namespace"),
            "subdir": "", "tag_pattern": "", "branch_pattern": "", **fields}
    return client.post(PAGE, data=data)


def reindex(client: httpx.Client, repository_id: int, token: str | None = None) -> httpx.Response:
    token = csrf(client.get(PAGE).text) if token is None else token
    return client.post(f"{PAGE}/{repository_id}/reindex", data={"csrf_token": token})


def input_value(html: str, name: str) -> str:
    attrs = [a for a in Tags(html).of("input") if a.get("name") == name]
    assert len(attrs) == 1, f"{len(attrs)} inputs named {name!r}"
    return attrs[0].get("value") or ""


def repository_item(html: str, repository_id: int) -> str:
    match = re.search(rf'<li id="repository-{repository_id}">(.*?)\n  </li>', html, re.S)
    assert match, f"repository {repository_id} is not listed"
    return match[1]


def stored(hub: LiveHub) -> list[Repository]:
    with session_scope(hub.context.engine) as session:
        return list(session.exec(select(Repository).order_by(Repository.id)))  # type: ignore[arg-type]


def queued(hub: LiveHub) -> list[int]:
    return [job.repository_id for job in jobs(hub) if job.state == "queued"]


def test_registering_lists_the_repository_and_shows_its_last_result(ihub: LiveHub, make_repo, git_daemon) -> None:  # noqa: F811
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest(version="1.0.0"), "solver.py": SOLVER}).commit("first")
    first = repo.tag("v1.0.0")
    repo.tag("nightly")
    repo.write({"cvflow.toml": manifest(version="1.0.0") + "# forgot to bump\n"}).commit("second")
    repo.tag("v1.1.0")
    url = git_daemon.url(name)

    client = browser(ihub)
    assert client.get(PAGE).headers["location"] == f"/login?next={PAGE}"
    ihub.create_user("alice")
    assert sign_in(client, "alice", next=PAGE).headers["location"] == PAGE

    form = client.get(PAGE)
    assert form.status_code == 200 and form.headers["cache-control"] == "no-store"
    assert f'<a href="{PAGE}">Publish from git</a>' in form.text  # in the signed-in navigation
    assert input_value(form.text, "namespace") == "alice"
    assert "You manage no repositories yet." in text(form.text)

    done = register(client, url, tag_pattern="*", branch_pattern="main")
    assert done.status_code == 303
    [row] = stored(ihub)
    assert done.headers["location"] == f"{PAGE}?registered={row.id}"
    assert (row.display_url, row.tag_pattern, row.branch_pattern, row.subdir) == (url, "*", "main", "")
    assert queued(ihub) == [row.id]

    page = client.get(done.headers["location"]).text
    assert f"Repository {row.id} is registered; its first index is queued." in text(page)
    item = repository_item(page, row.id)
    assert f"<h3>{url}</h3>" in item
    assert "Status queued Package none yet (alice)" in text(item)
    assert "Not indexed yet." in text(item)
    secret = [a.get("value") for a in Tags(item).of("input") if a.get("id") == f"webhook-secret-{row.id}"]
    assert secret == [row.webhook_secret]
    hook = [a.get("value") for a in Tags(item).of("input") if a.get("id") == f"webhook-url-{row.id}"]
    assert hook == [f"{ihub.url}/api/v1/repositories/{row.id}/webhook"]

    assert run_jobs(ihub) == 1
    item = text(repository_item(client.get(PAGE).text, row.id))
    assert "Status error Package alice/detector" in item
    assert f"Last result: error Versions Tag Version Commit This run v1.0.0 1.0.0 {first[:12]} published" in item
    assert ("Errors v1.1.0 : the manifest says version 1.0.0, but the tag v1.1.0 says 1.1.0; they must agree "
            "( version_mismatch )") in item
    assert "Skipped tags nightly : not a SemVer version" in item

    queued_again = reindex(client, row.id)
    assert queued_again.status_code == 303
    assert queued_again.headers["location"] == f"{PAGE}?queued={row.id}#repository-{row.id}"
    assert queued(ihub) == [row.id]
    page = client.get(queued_again.headers["location"]).text
    assert f"A re-index of repository {row.id} is queued." in text(page)
    assert "Status queued" in text(repository_item(page, row.id))

    # Someone else sees neither the repository nor its secret, and may not re-index it: the
    # package it feeds is public, so it is forbidden rather than not found.
    run_jobs(ihub)
    bob = signed_in(ihub, "bob")
    bobs = bob.get(PAGE).text
    assert url not in bobs and row.webhook_secret not in bobs
    refused = reindex(bob, row.id)
    assert refused.status_code == 403 and "only the repository" in refused.text
    assert queued(ihub) == []


def test_the_page_is_accessible_and_has_no_inline_script(ihub: LiveHub) -> None:  # noqa: F811
    client = signed_in(ihub, "alice")
    page = register(client, "ftp://example.org/repo.git")
    tags = Tags(page.text)
    assert [s.get("src") for s in tags.of("script")] == ["/static/copy.js"] and tags.scripts == [""]
    assert not [t for t, a in tags.tags if "style" in a or any(k.startswith("on") for k in a)]
    labelled = {a.get("for") for a in tags.of("label")}
    fields = [a for a in tags.of("input") if a.get("type") not in ("hidden", "checkbox", "search")]
    assert fields and all(a.get("id") in labelled for a in fields)
    assert len(tags.of("fieldset")) == 2 and len(tags.of("legend")) == 2
    assert re.search(r'<div class="alert" role="alert">\s*<p class="error">', page.text)
    assert [t for t, _ in tags.tags if t in ("h1", "h2")] == ["h1", "h2", "h2"]


def test_forms_without_the_csrf_token_are_refused_and_change_nothing(ihub: LiveHub, make_repo,  # noqa: F811
                                                                     git_daemon) -> None:  # noqa: F811
    client = signed_in(ihub, "alice")
    url = git_daemon.url(make_repo()[1])
    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
        r = client.post(PAGE, data={**data, "url": url})
        assert r.status_code == 403 and "The form expired" in r.text, data
    assert stored(ihub) == []

    assert register(client, url).status_code == 303
    [row] = stored(ihub)
    run_jobs(ihub)  # an empty repository: nothing to publish, nothing queued after
    assert queued(ihub) == []
    for token in ("forged", ""):
        assert reindex(client, row.id, token).status_code == 403
    assert queued(ihub) == []
    assert reindex(client, row.id).status_code == 303 and queued(ihub) == [row.id]


@pytest.mark.parametrize("url", ["ftp://example.org/alice/detector.git", "file:///srv/git/detector.git",
                                 "ext::sh -c touch% /tmp/pwned", "git@example.org:alice/detector.git", ""])
def test_a_refused_url_re_renders_the_form_with_its_code_and_stores_nothing(ihub: LiveHub, url: str) -> None:  # noqa: F811
    client = signed_in(ihub, "alice")
    page = register(client, url, subdir="models/seg", tag_pattern="seg/v*", private="on")
    assert page.status_code == 400
    alert = re.search(r'role="alert">(.*?)</div>', page.text, re.S)
    assert alert and "Error code: invalid_repository_url" in text(alert[1])
    # What was typed stays in the form.
    assert input_value(page.text, "url") == url
    assert (input_value(page.text, "subdir"), input_value(page.text, "tag_pattern")) == ("models/seg", "seg/v*")
    assert any(a.get("name") == "private" and "checked" in a for a in Tags(page.text).of("input"))
    assert csrf(page.text)  # and it can be sent again
    assert stored(ihub) == [] and jobs(ihub) == []


def test_namespace_and_duplicate_errors_keep_their_status(ihub: LiveHub, make_repo, git_daemon) -> None:  # noqa: F811
    url = git_daemon.url(make_repo()[1])
    ihub.create_user("bob")
    client = signed_in(ihub, "alice")

    forbidden = register(client, url, namespace="bob")
    assert forbidden.status_code == 403 and "Error code: forbidden" in text(forbidden.text)
    assert input_value(forbidden.text, "namespace") == "bob"
    missing = register(client, url, namespace="nobody-here")
    assert missing.status_code == 400 and "Error code: namespace_not_found" in text(missing.text)
    pattern = register(client, url, tag_pattern="v\x01*")
    assert pattern.status_code == 400 and "Error code: invalid_field" in text(pattern.text)
    assert stored(ihub) == []

    assert register(client, url).status_code == 303
    twice = register(client, url)
    assert twice.status_code == 409 and "Error code: repository_exists" in text(twice.text)
    assert f"is already registered as repository {stored(ihub)[0].id}" in text(twice.text)


def test_signed_out_visitors_are_sent_to_sign_in_and_change_nothing(ihub: LiveHub) -> None:  # noqa: F811
    ihub.create_user("alice")
    visitor = browser(ihub)
    page = visitor.get(PAGE)
    assert page.status_code == 303 and page.headers["location"] == f"/login?next={PAGE}"
    login = visitor.get(page.headers["location"])
    assert hidden(login.text, "next") == PAGE
    token = csrf(login.text)  # a real session token, so only being signed out stops these
    for path in (PAGE, f"{PAGE}/1/reindex"):
        r = visitor.post(path, data={"csrf_token": token, "url": "git://127.0.0.1/x.git"})
        assert r.status_code == 303 and r.headers["location"] == f"/login?next={PAGE}"
    assert stored(ihub) == [] and jobs(ihub) == []


def test_a_repository_you_cannot_see_is_not_found(ihub: LiveHub, make_repo, git_daemon) -> None:  # noqa: F811
    alice = signed_in(ihub, "alice")
    assert register(alice, git_daemon.url(make_repo()[1])).status_code == 303
    [row] = stored(ihub)
    run_jobs(ihub)  # an empty repository feeds no package, so it stays hidden from others
    bob = signed_in(ihub, "bob")
    for repository_id in (row.id, 999_999):
        r = reindex(bob, repository_id)  # type: ignore[arg-type]
        assert r.status_code == 404 and "no repository" in r.text
    assert queued(ihub) == []


def test_a_read_only_mirror_registers_nothing(make_settings) -> None:  # type: ignore[no-untyped-def]
    live, server = start_hub(make_settings("sqlite-file", read_only=True, indexer_allow_private_addresses=True))
    try:
        client = signed_in(live, "alice")
        r = register(client, "git://127.0.0.1/detector.git")
        assert r.status_code == 403 and "Error code: read_only" in text(r.text)
        assert stored(live) == []
    finally:
        live.close_clients()
        server.__exit__()
        live.context.engine.dispose()


def test_registering_on_a_phone(one_hub: LiveHub, make_repo, git_daemon, chromium, screenshots) -> None:  # noqa: F811
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest(version="1.0.0"), "solver.py": SOLVER}).commit()
    repo.tag("v1.0.0")
    repo.tag("a-rather-long-tag-name-that-is-not-a-version")
    one_hub.create_user("alice")
    phone = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                 has_touch=True)
    try:
        page = phone.new_page()
        page.goto(one_hub.url + "/login")
        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(one_hub.url + "/")
        page.get_by_role("link", name="Publish from git").click()
        page.wait_for_url(one_hub.url + PAGE)

        page.get_by_label("Repository URL").fill("file:///etc")
        page.get_by_role("button", name="Register repository").click()
        assert "invalid_repository_url" in page.get_by_role("alert").inner_text()
        assert page.get_by_label("Repository URL").input_value() == "file:///etc"

        page.get_by_label("Repository URL").fill(git_daemon.url(name))
        page.get_by_label("Tag pattern").fill("*")
        page.get_by_role("button", name="Register repository").click()
        assert "is registered" in page.get_by_role("status").inner_text()
        run_jobs(one_hub)
        page.get_by_role("button", name=f"Re-index {git_daemon.url(name)} now").click()
        assert "re-index" in page.get_by_role("status").inner_text()
        page.get_by_text("Webhook (index on every push)").click()
        assert page.get_by_label("Secret").is_visible()
        assert page.get_by_role("cell", name="1.0.0", exact=True).is_visible()

        unnamed = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, button')]
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
            .map(el => el.outerHTML)""")
        assert unnamed == []
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width  # no sideways scrolling
        page.screenshot(path=str(screenshots / "publish-git-phone.png"), full_page=True)
    finally:
        phone.close()
