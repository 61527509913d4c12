"""The reviewer's page over a real socket on both backends: saved items drawn with their labels,
approved and sent back with plain forms (session + CSRF), who may do it, stale revisions, paging."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlmodel import select

from hub.db import session_scope
from hub.models import AnnotationItem, AnnotationProject
from tests.annotation import add_items
from tests.helpers import LiveHub
from tests.web.support import Tags, browser, csrf, sign_in, text

PROJECT = "alice/street"
REVIEW = f"/projects/{PROJECT}/review"
LABELS = {
    "img00000.png": [{"class": "car", "bbox": [1.5, 2, 10.25, 20], "from": None},
                     {"class": "person", "bbox": [30, 0, 34, 48], "from": None}],
    "img00001.png": [{"class": "person", "bbox": [0, 0, 5, 5], "from": None}],
}


class Street:
    """alice/street (private, detection: car, person) with three items, two of them saved by ann;
    rev reviews, ann annotates, alice owns it; each with an API token and a signed-in browser."""

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub
        self.api: dict[str, httpx.Client] = {}
        self.web: dict[str, httpx.Client] = {}
        for name in ("alice", "ann", "rev", "carol"):
            self.api[name] = hub.client(hub.create_user(name, scopes="annotate"))
            self.web[name] = browser(hub)
            assert sign_in(self.web[name], name).status_code == 303
        r = self.api["alice"].post("/api/v1/projects", json={"namespace": "alice", "name": "street",
                                                             "task": "detection", "classes": ["car", "person"]})
        assert r.status_code == 201, r.text
        for name, role in (("ann", "annotator"), ("rev", "reviewer")):
            assert self.api["alice"].put(f"/api/v1/projects/{PROJECT}/members/{name}",
                                         json={"role": role}).status_code == 204
        self.ids = dict(zip(["img00000.png", "img00001.png", "img00002.png"], add_items(hub, PROJECT, 3), strict=True))
        for name, labels in LABELS.items():
            self.save(name, labels, 0)

    def save(self, name: str, labels: list[dict[str, Any]], revision: int) -> None:
        r = self.api["ann"].put(f"/api/v1/projects/{PROJECT}/items/{self.ids[name]}/labels",
                                json={"revision": revision, "labels": labels})
        assert r.status_code == 200, r.text

    def item(self, name: str) -> dict[str, Any]:
        r = self.api["alice"].get(f"/api/v1/projects/{PROJECT}/items/{self.ids[name]}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def review(self, who: str, item: str | int, verdict: str, revision: int, *, page_html: str | None = None,
               token: bool = True, page: int = 1) -> httpx.Response:
        """Press a review button as ``who``'s browser would: the form with the page's CSRF token."""
        client = self.web[who]
        html = page_html if page_html is not None else client.get(f"/projects/{PROJECT}").text
        data = {"revision": str(revision), "verdict": verdict, "page": str(page)}
        if token:
            data["csrf_token"] = csrf(html)
        item_id = self.ids[item] if isinstance(item, str) else item
        return client.post(f"/projects/{PROJECT}/-/items/{item_id}/review", data=data)


@pytest.fixture
def street(hub: LiveHub) -> Street:
    return Street(hub)


def counts(html: str) -> str:
    match = re.search(r'<p class="meta" id="review-counts">(.*?)</p>', html, re.S)
    assert match, "no counts on the page"
    return text(match[1])


def figures(html: str) -> dict[str, dict[str, str | None]]:
    return {str(f["data-item-id"]): f for f in Tags(html).of("figure") if f.get("data-item-id")}


def test_a_reviewer_approves_one_and_sends_back_another(street: Street) -> None:
    rev = street.web["rev"]
    project_page = rev.get(f"/projects/{PROJECT}")
    assert 'id="start-reviewing" href="/projects/alice/street/review"' in project_page.text
    assert "Review saved items (2)" in text(project_page.text)
    page = rev.get(REVIEW)
    assert page.status_code == 200, page.text
    assert counts(page.text) == "2 saved, awaiting review 0 approved 1 to do"
    shown = figures(page.text)
    a, b = str(street.ids["img00000.png"]), str(street.ids["img00001.png"])
    assert set(shown) == {a, b} and shown[a]["data-revision"] == "1"
    # The labels are drawn over the image as SVG boxes, in the image's own pixels, named by class.
    tags = Tags(page.text)
    assert {"src": f"/projects/{PROJECT}/-/items/{a}/image", "alt": "img00000.png", "width": "64", "height": "48",
            "loading": "lazy"} in tags.of("img")
    rects = [r for r in tags.of("rect") if str(r.get("class") or "").startswith("box")]
    assert [(r["class"], r["x"], r["y"], r["width"], r["height"]) for r in rects] == [
        ("box c0", "1.5", "2.0", "10.25", "20.0"), ("box c1", "30.0", "0.0", "34.0", "48.0"),
        ("box c1", "0.0", "0.0", "5.0", "5.0")]
    assert "<title>car</title>" in page.text and "img00000.png: 2 boxes (car, person)" in text(page.text)
    assert tags.scripts == [""] and [s.get("src") for s in tags.of("script")] == ["/static/copy.js"]  # no inline script
    forms = [f for f in tags.of("form") if str(f.get("action", "")).endswith("/review")]
    assert len(forms) == 4 and all(f["method"] == "post" for f in forms)

    r = street.review("rev", "img00000.png", "approve", 1, page_html=page.text)
    assert r.status_code == 303 and r.headers["location"] == f"{REVIEW}?page=1&approved=img00000.png#review-h"
    after = rev.get(r.headers["location"])
    assert "img00000.png approved." in text(after.text)
    assert counts(after.text) == "1 saved, awaiting review 1 approved 1 to do"
    assert set(figures(after.text)) == {b}
    r = street.review("rev", "img00001.png", "reject", 1, page_html=after.text)
    assert r.status_code == 303 and r.headers["location"].endswith("sent_back=img00001.png#review-h")
    last = rev.get(r.headers["location"])
    assert "img00001.png sent back to the queue." in text(last.text)
    assert counts(last.text) == "0 saved, awaiting review 1 approved 2 to do"
    assert "Nothing to review" in text(last.text) and figures(last.text) == {}
    # What the API sees: approved, and back in the queue with its labels kept to fix; two reviews in the history.
    assert (street.item("img00000.png")["status"], street.item("img00000.png")["revision"]) == ("approved", 2)
    back = street.item("img00001.png")
    assert (back["status"], back["revision"], back["labels"]) == ("todo", 2, LABELS["img00001.png"])
    history = street.api["alice"].get(f"/api/v1/projects/{PROJECT}/items/{b}/history").json()["events"]
    assert [(e["action"], e["user"]) for e in history] == [("save", "ann"), ("reject", "rev")]
    assert "1 done of 3" in text(rev.get(f"/projects/{PROJECT}").text)


def test_only_reviewers_and_owners_reach_the_page_and_its_actions(street: Street, hub: LiveHub) -> None:
    ann, carol = street.web["ann"], street.web["carol"]
    assert "start-reviewing" not in ann.get(f"/projects/{PROJECT}").text
    page = ann.get(REVIEW)
    assert page.status_code == 403 and "only a project owner or reviewer may do this" in page.text
    r = street.review("ann", "img00000.png", "approve", 1)
    assert r.status_code == 403 and "only a project owner or reviewer may do this" in r.text
    assert carol.get(REVIEW).status_code == 404  # a stranger to the private project
    assert street.review("carol", "img00000.png", "approve", 1, page_html=carol.get("/projects").text).status_code == 404
    anonymous = browser(hub).get(REVIEW)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == f"/login?next={REVIEW}"
    assert street.review("rev", "img00000.png", "approve", 1, token=False).status_code == 403  # no CSRF token
    assert street.item("img00000.png")["status"] == "done"
    # The owner reviews too.
    owner = street.web["alice"]
    assert "start-reviewing" in owner.get(f"/projects/{PROJECT}").text
    assert owner.get(REVIEW).status_code == 200
    assert street.review("alice", "img00000.png", "approve", 1).status_code == 303
    assert street.item("img00000.png")["status"] == "approved"
    # A form that is not one of the page's.
    bad = street.review("rev", "img00001.png", "delete", 1)
    assert bad.status_code == 422 and "the verdict is approve or reject" in text(bad.text)
    assert street.item("img00001.png")["status"] == "done"


def test_a_stale_revision_says_what_changed_and_shows_the_item_as_it_is(street: Street) -> None:
    rev = street.web["rev"]
    page = rev.get(REVIEW).text  # the reviewer sees img00000.png at revision 1
    street.save("img00000.png", LABELS["img00001.png"], 1)  # meanwhile ann saves it again
    r = street.review("rev", "img00000.png", "approve", 1, page_html=page)
    assert r.status_code == 409
    alert = text(r.text.split('id="review-error">', 1)[1].split("</div>", 1)[0])
    assert alert.startswith("img00000.png changed since this page was loaded: it is saved again (revision 2), so "
                            "your review was not recorded.") and "stale_revision" in alert
    stale = figures(r.text.split('id="stale-item"', 1)[1].split("</ul>", 1)[0])
    assert list(stale) == [str(street.ids["img00000.png"])] and stale[str(street.ids["img00000.png"])]["data-revision"] == "2"
    assert street.item("img00000.png")["status"] == "done"
    # The item as it is now can be reviewed from there.
    assert street.review("rev", "img00000.png", "approve", 2, page_html=r.text).status_code == 303
    # Sent back by someone else meanwhile: said so, and nothing left to press.
    page = rev.get(REVIEW).text
    assert street.review("alice", "img00001.png", "reject", 1).status_code == 303
    r = street.review("rev", "img00001.png", "approve", 1, page_html=page)
    assert r.status_code == 409 and "img00001.png changed since this page was loaded: it is back in the queue" in text(r.text)
    assert 'class="approve"' not in r.text.split('id="stale-item"', 1)[1].split("</ul>", 1)[0]


def test_fifty_a_page(street: Street, hub: LiveHub) -> None:
    with session_scope(hub.context.engine, write=True) as session:
        project_id = session.exec(select(AnnotationProject.id).where(AnnotationProject.full_name == PROJECT)).one()
        first = session.exec(select(AnnotationItem).where(AnnotationItem.project_id == project_id)).first()
        assert first is not None
        session.add_all(AnnotationItem(project_id=project_id, sha256=first.sha256, file_name=f"more{i:03d}.png",
                                       width=64, height=48, status="done", revision=1) for i in range(50))
    rev = street.web["rev"]
    one, two = rev.get(REVIEW), rev.get(f"{REVIEW}?page=2")
    assert len(figures(one.text)) == 50 and len(figures(two.text)) == 2
    assert "52 saved items to review, 50 on this page." in text(one.text) and "Page 1 of 2" in text(one.text)
    assert set(figures(one.text)).isdisjoint(figures(two.text))
    on_two = sorted(int(i) for i in figures(two.text))
    r = street.review("rev", on_two[0], "approve", 1, page_html=two.text, page=2)
    assert r.status_code == 303 and r.headers["location"] == f"{REVIEW}?page=2&approved=more048.png#review-h"
    assert list(figures(rev.get(r.headers["location"]).text)) == [str(on_two[1])]
