"""Annotation projects on the website, over a real socket on both backends: the list and its
form, a project's page for each kind of visitor, adding images (form and drag-and-drop JSON),
members, snapshots, and the annotation page's JSON routes (session + CSRF header, the hub's
codes and statuses, stale saves). The browser side of the annotation page is tested in Chromium."""

from __future__ import annotations

import io
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import expect
from sqlmodel import select

from hub.db import session_scope
from hub.models import AnnotationItem
from tests.conftest import running_hub
from tests.helpers import PASSWORD, LiveHub
from tests.web.support import Tags, browser, csrf, section, sign_in, text
from web.charts import usage_svg


def png(width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def noise_png(width: int, height: int) -> bytes:
    """A PNG that does not compress: a file larger than a website form may carry."""
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), random.Random(7).randbytes(width * height * 3)).save(out, format="PNG")
    return out.getvalue()


def signed_in(hub: LiveHub, name: str) -> httpx.Client:
    hub.create_user(name)
    client = browser(hub)
    assert sign_in(client, name).status_code == 303
    return client


def token_of(client: httpx.Client, path: str = "/projects") -> str:
    return csrf(client.get(path).text)


def meta_token(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match, "the page has no CSRF meta tag"
    return match[1]


def create(client: httpx.Client, **fields: Any) -> httpx.Response:
    data = {"csrf_token": token_of(client), "namespace": "alice", "name": "street", "task": "detection",
            "classes": "car, person", "private": "on", **fields}
    return client.post("/projects", data={k: v for k, v in data.items() if v is not None})


def add_images(client: httpx.Client, project: str, files: dict[str, bytes], **headers: str) -> httpx.Response:
    page = client.get(f"/projects/{project}").text
    return client.post(f"/projects/{project}/-/images", data={"csrf_token": csrf(page), "split": "train"},
                       files=[("images", (n, b, "image/png")) for n, b in files.items()], headers=headers)


def add_member(client: httpx.Client, project: str, user: str, role: str) -> httpx.Response:
    page = client.get(f"/projects/{project}").text
    return client.post(f"/projects/{project}/-/members", data={"csrf_token": csrf(page), "user": user, "role": role})


@pytest.fixture
def street(hub: LiveHub) -> httpx.Client:
    """alice/street (private, detection: car, person) with two images; alice's signed-in browser."""
    alice = signed_in(hub, "alice")
    r = create(alice, description="Cars & people <b>downtown</b>")
    assert r.status_code == 303 and r.headers["location"] == "/projects/alice/street", r.text
    added = add_images(alice, "alice/street", {"a.png": png(), "b.png": png(colour=(0, 90, 200))})
    assert added.status_code == 303 and added.headers["location"] == "/projects/alice/street?added=2&existing=0"
    return alice


class Json:
    """The annotation page's JSON routes, as its script calls them: cookie + X-CSRF-Token."""

    def __init__(self, client: httpx.Client, project: str = "alice/street") -> None:
        self.client, self.base = client, f"/projects/{project}/-"
        page = client.get(f"/projects/{project}/annotate")
        self.token = meta_token(page.text) if page.status_code == 200 else token_of(client)

    def __call__(self, method: str, path: str, *, token: bool = True, **kw: Any) -> httpx.Response:
        headers = {"accept": "application/json", **({"x-csrf-token": self.token} if token else {})}
        return self.client.request(method, self.base + path, headers=headers, **kw)


def error(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("application/json"), r.text
    return str(r.json()["error"]["code"])


# --- pages ----------------------------------------------------------------------------------


def test_owner_creates_a_project_and_sees_its_page(hub: LiveHub, street: httpx.Client) -> None:
    listing = street.get("/projects")
    assert listing.status_code == 200
    assert '<a href="/projects/alice/street">alice/street</a> <span class="badge">private</span>' in listing.text
    assert "0 done of 2" in text(listing.text)
    page = street.get("/projects/alice/street?added=2&existing=0")  # where adding images led
    assert page.status_code == 200
    body = text(page.text)
    assert "2 image(s) added." in body and "in the project already" not in body and "0 done of 2" in body and "your role: owner" in body
    assert 'id="start-annotating" href="/projects/alice/street/annotate"' in page.text
    assert 'action="/projects/alice/street/-/images"' in page.text and 'id="publish-snapshot"' in page.text
    assert "Nothing saved yet." in body
    # The description is shown as text, never as markup.
    assert "Cars &amp; people &lt;b&gt;downtown&lt;/b&gt;" in page.text and "<b>downtown" not in page.text
    scripts = [a.get("src") for a in Tags(page.text).of("script")]
    assert scripts == ["/static/copy.js", "/static/project.js"] and Tags(page.text).scripts == ["", ""]


def test_private_project_is_not_found_for_strangers_and_anonymous_visitors(hub: LiveHub, street: httpx.Client) -> None:
    carol = signed_in(hub, "carol")
    for client in (carol, browser(hub)):
        for path in ("/projects/alice/street", "/projects/alice/street/annotate", "/projects/alice/nothing"):
            r = client.get(path)
            assert r.status_code in (404, 303), (path, r.status_code)
            if r.status_code == 303:  # the annotation page sends anonymous visitors to sign in first
                assert client is not carol and r.headers["location"].startswith("/login?next=")
            else:
                assert "no project alice/" in r.text
        assert "alice/street" not in client.get("/projects").text


def test_public_project_is_read_by_anyone_but_only_members_annotate(hub: LiveHub) -> None:
    alice = signed_in(hub, "alice")
    assert create(alice, name="open", private=None).status_code == 303
    anonymous = browser(hub).get("/projects/alice/open")
    assert anonymous.status_code == 200 and "start-annotating" not in anonymous.text
    assert "Owners see the members here." in anonymous.text and "upload-form" not in anonymous.text
    visitor = browser(hub)
    token = token_of(visitor, "/login")
    r = visitor.post("/projects/alice/open/-/next", headers={"x-csrf-token": token, "accept": "application/json"})
    assert r.status_code == 401 and r.json()["error"] == {"code": "unauthenticated", "message": "sign in to do this"}
    r = visitor.post("/projects/alice/open/-/images", data={"csrf_token": token}, files={"images": ("a.png", png())})
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/projects/alice/open"
    carol = signed_in(hub, "carol")
    assert "start-annotating" not in carol.get("/projects/alice/open").text
    assert carol.get("/projects/alice/open/annotate").status_code == 403
    assert Json(carol, "alice/open")("POST", "/next").status_code == 403


def test_form_errors_come_back_with_the_form_and_a_clear_message(hub: LiveHub) -> None:
    alice = signed_in(hub, "alice")
    r = create(alice, name="Bad Name!", classes="car, <b>x</b>")
    assert r.status_code == 422
    body = text(r.text)
    assert "invalid_project" in body and "name: 1 to 64 lowercase letters" in body and "classes[1]" in body
    assert 'value="Bad Name!"' in r.text and "&lt;b&gt;x&lt;/b&gt;" in r.text  # what was typed, escaped
    assert create(alice).status_code == 303
    again = create(alice)
    assert again.status_code == 409 and "project_exists" in again.text
    assert create(alice, namespace="bob").status_code == 400  # no such namespace
    assert browser(hub).get("/projects").text.count('action="/projects"') == 0  # no form for visitors


def test_upload_refuses_a_file_that_is_not_an_image(hub: LiveHub, street: httpx.Client) -> None:
    r = add_images(street, "alice/street", {"notes.png": b"just some text, not a picture"})
    assert r.status_code == 422
    alert = text(r.text.split('id="project-error">', 1)[1].split("</div>", 1)[0])
    assert alert == ("Not an image the hub accepts: notes.png: not a PNG or JPEG file "
                     "notes.png: not a PNG or JPEG file Error code: invalid_image")
    assert "invalid_image" in r.text and "2 done" not in r.text
    as_json = add_images(street, "alice/street", {"notes.png": b"GIF89a..."}, accept="application/json")
    assert as_json.status_code == 422 and error(as_json) == "invalid_image"
    assert as_json.json()["error"]["details"]["problems"][0]["item"] == "notes.png"
    # A browser's file name with spaces is made portable; adding the same image again changes nothing.
    ok = add_images(street, "alice/street", {"my photo.png": png(), "a.png": png()}, accept="application/json")
    assert ok.status_code == 200, ok.text
    assert ok.json()["added"] == 1 and ok.json()["existing"] == 1
    assert [i["file_name"] for i in ok.json()["items"]] == ["my_photo.png", "a.png"]
    # Only owners add images.
    bob = signed_in(hub, "bob")
    assert add_member(street, "alice/street", "bob", "annotator").status_code == 303
    refused = add_images(bob, "alice/street", {"c.png": png()}, accept="application/json")
    assert refused.status_code == 403 and error(refused) == "forbidden"


def test_owner_manages_members_with_forms(hub: LiveHub, street: httpx.Client) -> None:
    hub.create_user("bob")
    assert add_member(street, "alice/street", "bob", "annotator").headers["location"].endswith("?member=1#members-h")
    members = section(street.get("/projects/alice/street").text, "members-h")
    assert '<td><a href="/bob">bob</a></td><td>annotator</td>' in members
    missing = add_member(street, "alice/street", "nobody", "annotator")
    assert missing.status_code == 400 and "user_not_found" in missing.text
    bad = add_member(street, "alice/street", "bob", "boss")
    assert bad.status_code == 422 and "a role is one of owner, annotator, reviewer" in bad.text
    assert add_member(street, "alice/street", "bob", "remove").status_code == 303
    assert "bob" not in section(street.get("/projects/alice/street").text, "members-h")


# --- the annotation page and its JSON -------------------------------------------------------


def test_annotation_page_loads_its_script_and_states_the_keys(hub: LiveHub, street: httpx.Client) -> None:
    page = street.get("/projects/alice/street/annotate")
    assert page.status_code == 200
    tags = Tags(page.text)
    assert [a.get("src") for a in tags.of("script")] == ["/static/copy.js", "/static/annotate.js"]
    assert tags.scripts == ["", ""]  # no inline script: the CSP stays strict
    root = next(a for a in tags.of("div") if a.get("id") == "annotate")
    assert root["data-api"] == "/projects/alice/street/-" and root["data-task"] == "detection"
    assert [(a["data-class"], a["data-class-index"]) for a in tags.of("li") if "data-class" in a] == [
        ("car", "0"), ("person", "1")]
    assert {"annotate-canvas", "annotate-overlay", "annotate-image", "save-status", "progress"} <= {
        a.get("id") for _, a in tags.tags}
    help_text = text(section(page.text, "classes-h") + page.text.split('id="annotate-help"', 1)[1])
    for phrase in ("accept the selected suggestion", "Shift+A", "undo, redo", "skip"):
        assert phrase in help_text
    assert street.get("/static/annotate.js").status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_json_routes_need_the_csrf_header(hub: LiveHub, street: httpx.Client) -> None:
    api = Json(street)
    for method, path in (("POST", "/next"), ("PUT", "/items/1/labels"), ("DELETE", "/items/1/lease")):
        assert api(method, path, token=False).status_code == 403
        assert street.request(method, api.base + path, headers={"x-csrf-token": "forged"}).status_code == 403
    with session_scope(hub.context.engine) as session:
        assert all(i.leased_by is None for i in session.exec(select(AnnotationItem)))


def test_annotator_leases_saves_and_gets_the_next_item(hub: LiveHub, street: httpx.Client) -> None:
    bob = signed_in(hub, "bob")
    add_member(street, "alice/street", "bob", "annotator")
    api = Json(bob)
    first = api("POST", "/next")
    assert first.status_code == 200, first.text
    item = first.json()["item"]
    assert first.json()["progress"] == {"done": 0, "total": 2}
    assert (item["file_name"], item["width"], item["height"], item["revision"]) == ("a.png", 64, 48, 0)
    assert item["lease"]["user"] == "bob"
    image = api("GET", f"/items/{item['id']}/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == png()
    assert api("GET", f"/items/{item['id']}").json()["item"]["id"] == item["id"]
    # Alice, also an annotator (owner), gets the other item while bob holds this one.
    alice = Json(street)
    assert alice("POST", "/next").json()["item"]["file_name"] == "b.png"
    leased = alice("PUT", f"/items/{item['id']}/labels", json={"revision": 0, "labels": [], "duration_ms": 5})
    assert leased.status_code == 409 and error(leased) == "item_leased"

    labels = [{"class": "car", "bbox": [1, 2, 30, 20], "from": None}]
    saved = api("PUT", f"/items/{item['id']}/labels", json={"revision": 0, "labels": labels, "duration_ms": 4200})
    assert saved.status_code == 200, saved.text
    assert saved.json()["item"]["revision"] == 1 and saved.json()["item"]["status"] == "done"
    assert saved.json()["progress"] == {"done": 1, "total": 2}
    # A second save from revision 0 is stale: 409 with the current item, nothing saved.
    stale = api("PUT", f"/items/{item['id']}/labels", json={"revision": 0, "labels": [], "duration_ms": 1})
    assert stale.status_code == 409 and error(stale) == "stale_revision"
    assert stale.json()["error"]["details"]["item"]["labels"] == [{"class": "car", "bbox": [1.0, 2.0, 30.0, 20.0],
                                                                   "from": None}]
    bad = api("PUT", f"/items/{item['id']}/labels", json={"revision": 1, "labels": [{"class": "cat"}]})
    assert bad.status_code == 422 and error(bad) == "invalid_labels"
    assert error(api("PUT", f"/items/{item['id']}/labels", json={"labels": []})) == "invalid_field"
    assert error(api("PUT", f"/items/{item['id']}/labels", content=b"[1")) == "invalid_json"
    assert error(api("GET", "/items/999999")) == "item_not_found"
    # Bob has nothing left (alice holds b.png); alice gives it back with S and bob gets it.
    assert api("POST", "/next").json()["item"] is None
    b = alice("POST", "/next").json()["item"]
    assert alice("DELETE", f"/items/{b['id']}/lease").status_code == 204
    assert api("POST", "/next").json()["item"]["id"] == b["id"]
    assert alice("DELETE", f"/items/{b['id']}/lease").status_code == 204  # an owner may give back bob's


def test_roles_and_visibility_on_the_json_routes(hub: LiveHub, street: httpx.Client) -> None:
    carol = signed_in(hub, "carol")
    stranger = Json(carol)
    r = stranger("POST", "/next")
    assert r.status_code == 404 and error(r) == "project_not_found"
    assert error(stranger("GET", "/items/1/image")) == "project_not_found"
    add_member(street, "alice/street", "carol", "reviewer")
    reviewer = Json(carol)
    r = reviewer("POST", "/next")
    assert r.status_code == 403 and error(r) == "forbidden"
    assert reviewer("GET", "/items/1/image").status_code in (200, 404)  # a reader: the image (or no such item)
    anonymous = browser(hub)
    token = token_of(anonymous, "/login")
    r = anonymous.post("/projects/alice/street/-/next", headers={"x-csrf-token": token, "accept": "application/json"})
    assert r.status_code == 404 and error(r) == "project_not_found"


def test_the_chart_shows_how_suggestions_were_used_per_model_version(hub: LiveHub, street: httpx.Client) -> None:
    # Suggestions as a worker would post them (in-process: the worker side has its own tests).
    with session_scope(hub.context.engine, write=True) as session:
        for item in session.exec(select(AnnotationItem)):
            item.suggestions = [{"class": "car", "bbox": [0, 0, 10, 10], "score": 0.9},
                                {"class": "person", "bbox": [20, 20, 10, 10], "score": 0.4}]
            item.suggestion_version = "1.2.0"
            session.add(item)
    api = Json(street)
    item = api("POST", "/next").json()["item"]
    labels = [{"class": "car", "bbox": [0, 0, 10, 10], "from": 0}, {"class": "car", "bbox": [40, 30, 5, 5], "from": None}]
    assert api("PUT", f"/items/{item['id']}/labels",
               json={"revision": item["revision"], "labels": labels, "duration_ms": 3000}).status_code == 200
    page = street.get("/projects/alice/street")
    usage = section(page.text, "usage-h")
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in usage and 'class="chart usage"' in usage
    assert "<title>1.2.0: 1 accepted</title>" in usage and "<title>1.2.0: 1 rejected</title>" in usage
    assert "<title>1.2.0: 1 added</title>" in usage and "edited</title>" not in usage
    row = text(usage.split('id="usage-table"', 1)[1])
    assert "1.2.0 1 1 0 1 1 3.0 s 3.0 s" in row
    assert "1 done of 2" in text(page.text)


def test_usage_chart_scales_stacks_and_escapes() -> None:
    svg = usage_svg([{"model_version": "1.0.0", "accepted": 6, "edited": 2, "rejected": 1, "added": 1},
                     {"model_version": "<script>", "added": 5}])
    bars = re.findall(r'<rect x="([\d.]+)" y="(\d+)" width="([\d.]+)" height="26" class="seg-(\w+)"><title>([^<]*)</title>',
                      svg)
    first = [(float(x), float(w), part) for x, y, w, part, _ in bars if y == "28"]
    assert [p for _, _, p in first] == ["accepted", "edited", "rejected", "added"]
    for (x, w, _), (nx, _, _) in zip(first, first[1:], strict=False):
        assert abs(x + w - nx) < 0.2  # stacked end to end
    assert abs(sum(w for _, w, _ in first) - (640 - 16 - 150)) < 0.5  # the largest total fills the width
    assert abs(first[0][1] / first[1][1] - 3) < 0.01
    assert "&lt;script&gt;" in svg and "<script>" not in svg
    assert usage_svg([]) == ""


def test_snapshot_publishes_the_saved_items_as_a_dataset_version(hub: LiveHub, street: httpx.Client) -> None:
    page = street.get("/projects/alice/street").text
    empty = street.post("/projects/alice/street/-/snapshots", data={"csrf_token": csrf(page)})
    assert empty.status_code == 409 and "nothing_to_snapshot" in empty.text
    api = Json(street)
    item = api("POST", "/next").json()["item"]
    api("PUT", f"/items/{item['id']}/labels", json={"revision": 0, "labels": [
        {"class": "person", "bbox": [2, 2, 20, 30], "from": None}], "duration_ms": 10})
    r = street.post("/projects/alice/street/-/snapshots", data={"csrf_token": csrf(page)})
    assert r.status_code == 303 and r.headers["location"] == "/projects/alice/street?snapshot=1.0.0#snapshots-h"
    after = street.get(r.headers["location"])
    assert "Snapshot 1.0.0 published." in text(after.text)
    assert '<a href="/alice/street-data/v/1.0.0">alice/street-data 1.0.0</a>' in section(after.text, "snapshots-h")
    assert street.get("/alice/street-data/v/1.0.0").status_code == 200


# --- in a browser -------------------------------------------------------------------------


@pytest.fixture
def browser_site(make_settings) -> Iterator[LiveHub]:  # type: ignore[no-untyped-def]
    """A hub of its own on SQLite for the browser test (one backend: the page is the same on both)."""
    with running_hub(make_settings("sqlite-file")) as live:
        yield live


def test_annotation_page_in_a_browser_draws_accepts_undoes_and_saves(chromium: Any, browser_site: LiveHub,
                                                                     screenshots: Path) -> None:
    site = browser_site
    alice = signed_in(site, "alice")
    assert create(alice).status_code == 303
    add_images(alice, "alice/street", {"a.png": png(200, 100), "b.png": png(200, 100, (0, 90, 200))})
    with session_scope(site.context.engine, write=True) as session:
        b = session.exec(select(AnnotationItem).where(AnnotationItem.file_name == "b.png")).one()
        b.suggestions = [{"class": "car", "bbox": [10, 10, 50, 40], "score": 0.9},
                         {"class": "person", "bbox": [100, 20, 40, 60], "score": 0.6}]
        b.suggestion_version = "1.0.0"
        session.add(b)
    big = noise_png(800, 700)
    assert len(big) > 1 << 20
    # On a phone the page fits the screen, the image fits the page and the overlay covers the image.
    phone = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                 has_touch=True)
    try:
        small = phone.new_page()
        small.goto(site.url + "/login?next=/projects/alice/street/annotate")
        small.get_by_label("User name").fill("alice")
        small.get_by_label("Password").fill(PASSWORD)
        small.get_by_role("button", name="Sign in").click()
        small.wait_for_selector("#annotate[data-item-id]")
        # Not wait_for_function: its polling evaluates a string, which the page's CSP refuses.
        expect(small.locator("#annotate-image")).to_have_js_property("complete", True)
        assert small.evaluate("document.documentElement.scrollWidth") <= 390
        image, overlay = (small.locator(s).bounding_box() for s in ("#annotate-image", "#annotate-overlay"))
        assert image and overlay and 100 < image["width"] <= 390
        assert all(abs(image[k] - overlay[k]) < 1 for k in ("x", "y", "width", "height")), (image, overlay)
        assert abs(image["width"] / image["height"] - 2) < 0.05  # the 200x100 image keeps its shape
        assert small.evaluate("getComputedStyle(document.getElementById('annotate-canvas')).touchAction") == "none"
        small.screenshot(path=str(screenshots / "annotate-phone.png"), full_page=True)
    finally:
        phone.close()
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    try:
        page = context.new_page()
        # Failed requests are caught as responses below (the browser's own favicon request is no concern).
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning")
                and not m.text.startswith("Failed to load resource") else None)
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(site.url + "/login?next=/projects/alice/street/annotate")
        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/projects/alice/street/annotate")
        page.wait_for_selector("#annotate[data-item-id]")
        expect(page.locator("#item-info")).to_contain_text("a.png")
        expect(page.locator("#annotate-image")).to_have_js_property("complete", True)

        # Draw a box from (20%, 20%) to (60%, 80%) of the image, then make it a person (key 2).
        box = page.locator("#annotate-overlay").bounding_box()
        assert box and box["width"] > 100
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5, steps=4)
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.8, steps=4)
        page.mouse.up()
        assert page.locator('#annotate-overlay g[data-label-index="0"]').count() == 1
        page.keyboard.press("2")
        expect(page.locator('#label-list [data-label-index="0"]')).to_contain_text("person (drawn)")
        page.keyboard.press("Enter")
        expect(page.locator("#progress")).to_have_text("1 done of 2")
        expect(page.locator("#item-info")).to_contain_text("b.png")

        # The next item's suggestions: accept all, delete one, undo the delete, save.
        assert page.locator("#annotate-overlay g.suggestion").count() == 2
        page.keyboard.press("Tab")
        page.screenshot(path=str(screenshots / "annotate.png"), full_page=True)
        page.keyboard.press("Escape")
        page.keyboard.press("Shift+A")
        assert page.locator("#annotate-overlay g.label").count() == 2
        page.keyboard.press("Tab")
        page.keyboard.press("x")
        assert page.locator("#annotate-overlay g.label").count() == 1
        page.keyboard.press("Control+z")
        assert page.locator("#annotate-overlay g.label").count() == 2
        page.keyboard.press("Enter")
        expect(page.locator("#progress")).to_have_text("2 done of 2")
        expect(page.locator("#save-status")).to_contain_text("Nothing left to annotate")
        assert page.locator("#annotate-empty").is_visible()

        # Adding an image larger than a form may carry: the page's script sends it with the CSRF header.
        page.goto(site.url + "/projects/alice/street")
        page.set_input_files("#upload-images", files=[{"name": "big.png", "mimeType": "image/png", "buffer": big}])
        page.get_by_role("button", name="Add images").click()
        page.wait_for_url("**/projects/alice/street?added=1&existing=0")
        expect(page.get_by_role("status").first).to_have_text("1 image(s) added.")
        expect(page.locator("#project-progress")).to_have_text("2 done of 3")
        page.screenshot(path=str(screenshots / "project.png"), full_page=True)
    finally:
        context.close()
    with session_scope(site.context.engine) as session:
        saved = {i.file_name: i.labels for i in session.exec(select(AnnotationItem))}
    (label,) = saved["a.png"]
    assert label["class"] == "person" and label["from"] is None
    x, y, w, h = label["bbox"]
    assert abs(x - 40) <= 2 and abs(y - 20) <= 2 and abs(w - 80) <= 2 and abs(h - 60) <= 2
    assert saved["b.png"] == [{"class": "car", "bbox": [10.0, 10.0, 50.0, 40.0], "from": 0},
                              {"class": "person", "bbox": [100.0, 20.0, 40.0, 60.0], "from": 1}]
    assert problems == []


def test_classification_in_a_browser_and_a_save_that_meets_another(chromium: Any, browser_site: LiveHub) -> None:
    site = browser_site
    owner_api = site.client(site.create_user("alice"))  # alice's API token, for her save below
    alice = browser(site)
    sign_in(alice, "alice")
    site.create_user("bob")
    assert create(alice, name="pets", task="classification", classes="cat\ndog\nbird").status_code == 303
    add_images(alice, "alice/pets", {"p1.png": png(80, 60), "p2.png": png(80, 60, (10, 10, 10))})
    add_member(alice, "alice/pets", "bob", "annotator")
    with session_scope(site.context.engine, write=True) as session:
        p1 = session.exec(select(AnnotationItem).where(AnnotationItem.file_name == "p1.png")).one()
        p1.suggestions, p1.suggestion_version = [{"class": "dog", "score": 0.8}, {"class": "cat", "score": 0.2}], "2.0.0"
        session.add(p1)
    context = chromium.new_context(viewport={"width": 1024, "height": 768})
    try:
        page = context.new_page()
        page.goto(site.url + "/login?next=/projects/alice/pets/annotate")
        page.get_by_label("User name").fill("bob")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("#annotate[data-item-id]")
        expect(page.locator("#item-info")).to_contain_text("p1.png")
        # The suggested class is marked; Enter accepts it.
        assert page.locator("#class-list li.suggested").get_attribute("data-class") == "dog"
        page.keyboard.press("Enter")
        expect(page.locator("#progress")).to_have_text("1 done of 2")
        expect(page.locator("#item-info")).to_contain_text("p2.png")
        # No suggestions: key 3 picks the third class. Before bob saves, alice (an owner) takes the
        # item back and saves it herself through the API, so bob's save meets hers.
        page.keyboard.press("3")
        expect(page.locator('#label-list [data-label-index="0"]')).to_contain_text("bird (drawn)")
        item_id = int(page.locator("#annotate").get_attribute("data-item-id") or 0)
        assert owner_api.delete(f"/api/v1/projects/alice/pets/items/{item_id}/lease").status_code == 204
        theirs = owner_api.put(f"/api/v1/projects/alice/pets/items/{item_id}/labels",
                               json={"revision": 0, "labels": [{"class": "cat", "from": None}]})
        assert theirs.status_code == 200, theirs.text
        page.keyboard.press("Enter")
        expect(page.locator("#conflict")).to_contain_text("Someone saved this item meanwhile")
        expect(page.locator('#label-list [data-label-index="0"]')).to_contain_text("cat (drawn)")
        page.keyboard.press("Control+z")  # bob's own choice back, then saved on top of hers
        expect(page.locator('#label-list [data-label-index="0"]')).to_contain_text("bird (drawn)")
        page.keyboard.press("Enter")
        expect(page.locator("#save-status")).to_contain_text("Nothing left to annotate")
    finally:
        context.close()
    with session_scope(site.context.engine) as session:
        saved = {i.file_name: (i.labels, i.revision) for i in session.exec(select(AnnotationItem))}
    assert saved["p1.png"][0] == [{"class": "dog", "from": 0}]
    assert saved["p2.png"] == ([{"class": "bird", "from": None}], 2)
