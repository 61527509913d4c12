"""Fine-tunes on the website: a version page says what it was fine-tuned from and trained on (links
only for readers of those packages), a base's page lists its fine-tunes, and the model zoo marks them."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers import LiveHub
from tests.test_lineage import dataset_text, lineage_toml, model_text
from tests.web.support import browser, publish_direct, section, sign_in, text

COCO = json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 1, "height": 1}],
                   "annotations": [{"image_id": 1, "category_id": 1}], "categories": [{"id": 1, "name": "cat"}]}).encode()


def model(hub: LiveHub, token: str, name: str, *, lineage: str = "", metrics: str = "",
          private: bool | None = None) -> None:
    publish_direct(hub, token, name, manifest_text=model_text(name, lineage=lineage, metrics=metrics), private=private)


@pytest.fixture
def family(hub: LiveHub) -> dict[str, str]:
    """alice: lenet (public base), shots (dataset), lenet-ft (its fine-tune, no latency of its own);
    bob: secret (a private base), open-ft (a public fine-tune of it), hidden-ft (a private
    fine-tune of alice/lenet). Returns the tokens."""
    tokens = {"alice": hub.create_user("alice"), "bob": hub.create_user("bob")}
    alice, bob = tokens["alice"], tokens["bob"]
    model(hub, alice, "alice/lenet", metrics="accuracy = 0.41\nlatency_ms = 2.0\nmemory_mb = 5")
    publish_direct(hub, alice, "alice/shots", manifest_text=dataset_text("alice/shots"),
                   files={"annotations/train.json": COCO, "images/train/a.png": b"\x89PNG"})
    model(hub, alice, "alice/lenet-ft", metrics="accuracy = 0.93",
          lineage=lineage_toml("alice/lenet@1.0.0", "alice/shots@1.0.0"))
    model(hub, bob, "bob/secret", private=True, metrics="accuracy = 0.5\nlatency_ms = 9.0")
    model(hub, bob, "bob/open-ft", metrics="accuracy = 0.8\nlatency_ms = 4.0",
          lineage=lineage_toml("bob/secret@1.0.0", "alice/shots@1.0.0"))
    model(hub, bob, "bob/hidden-ft", private=True, metrics="accuracy = 0.7",
          lineage=lineage_toml("alice/lenet@1.0.0", "alice/shots@1.0.0"))
    return tokens


def test_a_fine_tune_page_links_its_base_and_dataset_for_their_readers_only(hub: LiveHub, family: dict[str, str]
                                                                            ) -> None:
    anonymous = browser(hub)
    page = anonymous.get("/alice/lenet-ft")
    assert page.status_code == 200
    said = text(page.text)
    assert "Fine-tuned from alice/lenet@1.0.0" in said and "Trained on alice/shots@1.0.0" in said
    assert '<a href="/alice/lenet/v/1.0.0">alice/lenet@1.0.0</a>' in page.text
    assert '<a href="/alice/shots/v/1.0.0">alice/shots@1.0.0</a>' in page.text
    tuning = text(section(page.text, "lineage-h"))
    assert "Trainer finetune on cpu" in tuning and ", 12.5 s" in tuning
    assert "accuracy 0.93 0.41" in tuning and "epochs=3" in tuning

    # A public fine-tune of a private base: the base is "a private package" to others, with no
    # name, link or metric of it; its readers get the link.
    page = anonymous.get("/bob/open-ft")
    assert page.status_code == 200
    assert "Fine-tuned from a private package" in text(page.text)
    assert "bob/secret" not in page.text and "Trained on alice/shots@1.0.0" in text(page.text)
    stranger = browser(hub)
    hub.create_user("carol")
    assert sign_in(stranger, "carol").status_code == 303
    assert "bob/secret" not in stranger.get("/bob/open-ft").text
    bob = browser(hub)
    assert sign_in(bob, "bob").status_code == 303
    assert '<a href="/bob/secret/v/1.0.0">bob/secret@1.0.0</a>' in bob.get("/bob/open-ft").text

    # A plain version shows no lineage.
    plain = anonymous.get("/alice/lenet").text
    assert "Fine-tuned from" not in plain and 'id="lineage-h"' not in plain


def test_a_base_page_lists_its_fine_tunes_to_their_readers(hub: LiveHub, family: dict[str, str]) -> None:
    listed = section(browser(hub).get("/alice/lenet").text, "fine-tunes-h")
    assert '<a href="/alice/lenet-ft/v/1.0.0">alice/lenet-ft@1.0.0</a>' in listed
    assert "accuracy 0.93 (was 0.41)" in text(listed)
    assert "hidden-ft" not in listed
    bob = browser(hub)
    assert sign_in(bob, "bob").status_code == 303
    assert "bob/hidden-ft@1.0.0" in section(bob.get("/alice/lenet").text, "fine-tunes-h")
    # The API's package document counts the public ones (it is the same for every reader).
    assert hub.client().get("/api/v1/packages/alice/lenet").json()["fine_tunes"] == 1
    # A package nobody fine-tuned has no such section; nor has a dataset.
    assert 'id="fine-tunes-h"' not in browser(hub).get("/alice/lenet-ft").text
    assert 'id="fine-tunes-h"' not in browser(hub).get("/alice/shots").text


def test_the_zoo_draws_fine_tunes_as_marked_points(hub: LiveHub, family: dict[str, str]) -> None:
    page = browser(hub).get("/zoo/classification")
    assert page.status_code == 200
    svg = re.search(r"<svg .*?</svg>", page.text, re.S)
    assert svg
    circles = re.findall(r"<circle [^>]*><title>([^:]+):", svg[0])
    diamonds = dict(re.findall(r'<g class="point fine-tune"><path [^>]*><title>([^:]+): fine-tune of ([^,]+),', svg[0]))
    assert circles == ["alice/lenet"]
    # lenet-ft reports no latency: it is drawn at its base's; bob's base is private to anonymous readers.
    assert diamonds == {"alice/lenet-ft": "alice/lenet@1.0.0", "bob/open-ft": "a private package"}
    assert "(fine-tune of lenet@1.0.0)" in svg[0]
    rows = text(page.text)
    assert "alice/lenet-ft fine-tune of alice/lenet@1.0.0 0.93 2 5" in rows
    assert "bob/open-ft fine-tune of a private package 0.8 4" in rows
    assert "bob/secret" not in page.text and "hidden-ft" not in page.text

    bob = browser(hub)
    assert sign_in(bob, "bob").status_code == 303
    mine = bob.get("/zoo/classification").text
    assert "bob/open-ft fine-tune of bob/secret@1.0.0" in text(mine)
    assert "bob/hidden-ft fine-tune of alice/lenet@1.0.0 0.7 2 5" in text(mine)  # its base's speed, lent
