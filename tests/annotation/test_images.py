"""Adding images to a project over a live hub on both backends: real uploads, headers read from the store."""

from __future__ import annotations

import struct
import zlib
from datetime import timedelta
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from sqlmodel import select

from hub.db import session_scope
from hub.errors import HubError
from hub.models import AnnotationEvent, AnnotationItem, User, utcnow
from hub.security import Scopes
from hub.services.accounts import Principal
from hub.services.annotation import images
from hub.services.annotation.projects import find_project
from hub.services.blobs import user_holder
from hub.services.gc import collect_garbage
from tests.annotation import Team, _token, make_team
from tests.helpers import LiveHub, error_code, publish, upload
from tests.runner._images import png


@pytest.fixture
def team(hub: LiveHub) -> Team:
    return make_team(hub)


@pytest.fixture
def uploader(team: Team) -> httpx.Client:
    """alice again, with a token that may upload (uploads need a publish scope)."""
    return team.hub.client(_token(team.hub, "alice", "read publish"))


def jpeg(width: int, height: int, *, padding: int = 0) -> bytes:
    """A real JPEG (OpenCV); ``padding`` bytes of APP segments between SOI and the frame header."""
    ok, data = cv2.imencode(".jpg", np.full((height, width, 3), 120, np.uint8))
    assert ok
    raw = data.tobytes()
    segments = b""
    while padding > 0:
        n = min(padding, 65_000)
        segments += b"\xff\xe1" + struct.pack(">H", n + 2) + b"\x00" * n
        padding -= n
    return raw[:2] + segments + raw[2:]


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but holds a few bytes (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def add(team: Team, items: list[dict[str, Any]], client: httpx.Client | None = None) -> httpx.Response:
    return (client or team.alice).post(team.url("/items"), json={"items": items})


def rows(hub: LiveHub) -> list[AnnotationItem]:
    with session_scope(hub.context.engine) as session:
        return list(session.exec(select(AnnotationItem).order_by(AnnotationItem.id)).all())


def test_add_items_reads_sizes_from_headers_and_is_idempotent(team: Team, uploader: httpx.Client):
    a, b = png(64, 48), jpeg(40, 30, padding=200_000)  # the JPEG's frame header lies 200 KB in
    items = [{"sha256": upload(uploader, a), "file_name": "a.png"},
             {"sha256": upload(uploader, b), "file_name": "b.JPG", "split": "val"}]
    r = add(team, items)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert (doc["added"], doc["existing"]) == (2, 0)
    assert [i["file_name"] for i in doc["items"]] == ["a.png", "b.JPG"]
    got = {r.file_name: (r.width, r.height, r.split, r.status, r.revision) for r in rows(team.hub)}
    assert got == {"a.png": (64, 48, "train", "todo", 0), "b.JPG": (40, 30, "val", "todo", 0)}
    with session_scope(team.hub.context.engine) as session:
        events = session.exec(select(AnnotationEvent.item_id, AnnotationEvent.action, User.name)
                              .join(User, User.id == AnnotationEvent.user_id)).all()
    assert sorted(events) == sorted((i["id"], "add", "alice") for i in doc["items"])

    again = add(team, [*items, {"sha256": items[0]["sha256"], "file_name": "c.png"}])
    assert again.status_code == 201, again.text
    assert (again.json()["added"], again.json()["existing"]) == (1, 2)
    assert again.json()["items"][:2] == doc["items"]
    assert len(rows(team.hub)) == 3


def test_a_name_keeps_its_image(team: Team, uploader: httpx.Client):
    first, other = upload(uploader, png(8, 8)), upload(uploader, png(9, 9))
    assert add(team, [{"sha256": first, "file_name": "cat.png"}]).status_code == 201
    for item in ({"sha256": other, "file_name": "cat.png"},  # another image under the name
                 {"sha256": first, "file_name": "cat.png", "split": "val"},  # another split
                 {"sha256": other, "file_name": "CAT.jpeg"}):  # the same stem: one name in a dataset
        r = add(team, [item])
        assert r.status_code == 422 and error_code(r) == "invalid_files", r.text
    r = add(team, [{"sha256": other, "file_name": "dog.png"}, {"sha256": first, "file_name": "Dog.jpg"}])
    assert r.status_code == 422 and error_code(r) == "invalid_files"
    assert [r.file_name for r in rows(team.hub)] == ["cat.png"]


def test_files_that_are_no_images_the_hub_accepts(team: Team, uploader: httpx.Client):
    cases = {
        "text.png": b"just some text, named like an image\n",
        "bomb.png": png_header(50_000, 50_000),  # 2.5 gigapixels in a few dozen bytes
        "thin.png": png_header(40_000, 10),  # few pixels, but longer than any side may be
        "empty.png": png_header(0, 10),
        "cut.jpg": jpeg(20, 20)[:30],
    }
    digests = {name: upload(uploader, data) for name, data in cases.items()}
    for name, digest in digests.items():
        r = add(team, [{"sha256": digest, "file_name": name}])
        assert r.status_code == 422 and error_code(r) == "invalid_image", (name, r.text)
        assert r.json()["error"]["details"]["problems"][0]["item"] == name
    # One bad file refuses the call: nothing is added.
    good = upload(uploader, png(10, 10))
    r = add(team, [{"sha256": good, "file_name": "good.png"}, {"sha256": digests["bomb.png"], "file_name": "b.png"}])
    assert r.status_code == 422 and error_code(r) == "invalid_image"
    assert rows(team.hub) == []


def test_a_blob_over_64_mib_is_refused_without_reading_it(team: Team):
    with session_scope(team.hub.context.engine) as session:
        alice = session.exec(select(User).where(User.name == "alice")).one()
    big = png(16, 16) + b"\x00" * (64 << 20)
    digest = team.hub.context.uploads.put_small(big, grant_to=user_holder(alice.id))
    r = add(team, [{"sha256": digest, "file_name": "big.png"}])
    assert r.status_code == 422 and error_code(r) == "invalid_image"
    assert r.json()["error"]["details"]["items"] == ["big.png"]


def test_a_digest_the_caller_does_not_hold_is_missing_like_an_absent_one(team: Team, uploader: httpx.Client):
    bob = team.hub.user_client("bob")
    private = png(12, 12, b"\x11")
    held_by_bob = upload(bob, private)
    r = publish(bob, "bob/secret", files={"img.png": private}, private=True)
    assert r.status_code == 201, r.text
    absent = "ab" * 32
    answers = []
    for digest in (held_by_bob, absent):
        r = add(team, [{"sha256": digest, "file_name": "x.png"}])
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        answers.append((error["code"], error["message"], error["details"]["missing"] == [digest]))
    assert answers[0] == answers[1] == ("missing_blobs", answers[0][1], True)
    # Once alice uploads the bytes herself, they are hers to add.
    assert upload(uploader, private) == held_by_bob
    assert add(team, [{"sha256": held_by_bob, "file_name": "x.png"}]).status_code == 201
    # A public package's files are anyone's to reference.
    public = png(13, 13, b"\x22")
    assert publish(bob, "bob/open", files={"img.png": public}).status_code == 201
    r = add(team, [{"sha256": upload(bob, public), "file_name": "open.png"}])
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("item", [
    {"file_name": "../x.png"}, {"file_name": "a b.png"}, {"file_name": "x.gif"}, {"file_name": "x"},
    {"file_name": ".hidden.png"}, {"file_name": "CON.png"}, {"file_name": "d/x.png"}, {"file_name": "é.png"},
    {"file_name": "x" * 200 + ".png"}, {"split": "Train"}, {"split": ""}, {"split": "-x"}, {"split": "a" * 33},
    {"sha256": "nothex"}, {"sha256": None},
])
def test_bad_names_splits_and_digests(team: Team, uploader: httpx.Client, item: dict[str, Any]):
    entry = {"sha256": upload(uploader, png(8, 8)), "file_name": "ok.png", **item}
    r = add(team, [entry])
    assert r.status_code == 422 and error_code(r) == "invalid_files", r.text
    assert rows(team.hub) == []


def test_how_many_items_one_call_takes(team: Team, uploader: httpx.Client):
    digest = upload(uploader, png(8, 8))
    for items in ([], [{"sha256": digest, "file_name": f"i{i}.png"} for i in range(1001)]):
        r = add(team, items)
        assert r.status_code == 422 and error_code(r) == "invalid_files"
    r = team.alice.post(team.url("/items"), json={})
    assert r.status_code == 422 and error_code(r) == "invalid_files"


def test_only_owners_add_items(team: Team, uploader: httpx.Client):
    items = [{"sha256": upload(uploader, png(8, 8)), "file_name": "ok.png"}]
    for client, status, code in ((team.ann, 403, "forbidden"), (team.rev, 403, "forbidden"),
                                 (team.eve, 404, "project_not_found"), (team.anonymous, 401, "unauthenticated"),
                                 (team.alice_read, 403, "insufficient_scope")):
        r = add(team, items, client)
        assert r.status_code == status and error_code(r) == code, r.text
    r = team.alice.post("/api/v1/projects/alice/nothing/items", json={"items": items})
    assert r.status_code == 404 and error_code(r) == "project_not_found"
    assert rows(team.hub) == []


def test_gc_keeps_the_images_of_items(team: Team, uploader: httpx.Client):
    kept, loose = upload(uploader, png(8, 8, b"\x01")), upload(uploader, png(8, 8, b"\x02"))
    assert add(team, [{"sha256": kept, "file_name": "kept.png"}]).status_code == 201
    hub = team.hub.context
    report = collect_garbage(hub.engine, hub.store, hub.settings, now=utcnow() + timedelta(days=365))
    assert report.blobs_removed == [loose]
    assert hub.store.exists(kept) and not hub.store.exists(loose)
    image = team.alice.get(team.url(f"/items/{rows(team.hub)[0].id}/image"))
    assert image.status_code == 200 and image.content == png(8, 8, b"\x01")


def test_one_call_naming_an_image_twice(team: Team, uploader: httpx.Client):
    """The service adds a name once even when a caller (the website's form) did not collapse repeats."""

    digest, other = upload(uploader, png(8, 8, b"\x05")), upload(uploader, png(8, 8, b"\x06"))
    hub = team.hub.context
    with session_scope(hub.engine) as session:
        alice = session.exec(select(User).where(User.name == "alice")).one()
    who = Principal(user=alice, scopes=Scopes.parse("annotate"))
    twice = [images.NewItem(digest, "a.png"), images.NewItem(digest, "a.png")]
    headers = images.read_headers(hub.store, twice, {digest: len(png(8, 8, b"\x05"))})
    with session_scope(hub.engine, write=True) as session:
        project = find_project(session, "alice", "street")
        assert project is not None
        added = images.add_items(session, who, project, twice, headers)
    assert (added.added, added.existing) == (1, 0) and added.items[0] == added.items[1]
    for clash in ([images.NewItem(other, "b.png"), images.NewItem(digest, "B.jpg")],
                  [images.NewItem(other, "b.png"), images.NewItem(digest, "b.png")]):
        with session_scope(hub.engine, write=True) as session, pytest.raises(HubError) as caught:
            project = find_project(session, "alice", "street")
            assert project is not None
            images.add_items(session, who, project, clash, {**headers, other: headers[digest]})
        assert caught.value.code == "invalid_files"
    assert [r.file_name for r in rows(team.hub)] == ["a.png"]
