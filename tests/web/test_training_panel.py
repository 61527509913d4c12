"""The project page's fine-tuning panel over a real socket on both backends: the settings form
(owners; read-only for others), "Queue a fine-tune now", a job taken through the hub's worker
side (claim, heartbeats with progress, curves and a log tail, the preview grid, finish) as the
page shows it at each step, the preview route and the poll's JSON, and what strangers get from a
private project (404 everywhere). The chart functions and the form's parsing are checked alone."""

from __future__ import annotations

import io
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
from hub.errors import HubError
from hub.models import AnnotationProject
from hub.services import accounts
from hub.services import training as service
from hub.services.accounts import Principal
from tests.annotation import add_items
from tests.conftest import running_hub
from tests.helpers import PASSWORD, LiveHub, manifest
from tests.web.support import browser, csrf, publish_direct, sign_in, text
from web.charts import Series, curve_svg, loss_curve_svg, metric_curve_svg
from web.views.training import outcome, parse_every, parse_hyperparameters

PROJECT = "alice/street"
PAGE = f"/projects/{PROJECT}"
TRAINER = """
[[trainers]]
name = "finetune"
class = "trainer:Finetune"
task = "detection"
metric = "map50"
hyperparameters = { epochs = { default = 3, min = 1, max = 50 }, lr = { default = 0.001, min = 1e-6, max = 1.0 } }
"""
BOXES = [{"class": "car", "bbox": [1, 2, 10, 20], "from": None}]
HISTORY = [{"epoch": 1, "loss": 1.25, "metrics": {"map50": 0.31, "recall<b>": 0.5}},
           {"epoch": 2, "loss": 0.75, "metrics": {"map50": 0.52, "recall<b>": 0.6}},
           {"epoch": 3, "loss": 0.5, "metrics": {"map50": 0.61, "recall<b>": 0.7}}]
LOG = "epoch 3 done\n<script>alert('log')</script> & <b>bold</b>\n"


def section(html: str, heading_id: str = "training-h") -> str:
    """The panel's ``<section>``, its opening tag (the poll's data attributes) included."""
    match = re.search(rf'<section [^>]*aria-labelledby="{heading_id}"[^>]*>.*?</section>', html, re.S)
    assert match, f"no section {heading_id!r}"
    return match[0]


def grid_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 64), (20, 160, 90)).save(out, format="PNG")
    return out.getvalue()


class Loop:
    """alice/street (private, detection: car, person) suggested by alice/detector 1.0.0, which
    declares a trainer; three items, two saved. alice owns it, ann annotates, eve is a stranger;
    each with a signed-in browser, and alice's token for the worker's side."""

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub
        self.token = hub.create_user("alice", scopes="read publish annotate")
        self.api = hub.client(self.token)
        self.web: dict[str, httpx.Client] = {}
        for name in ("alice", "ann", "eve"):
            if name != "alice":
                hub.create_user(name, scopes="annotate")
            self.web[name] = browser(hub)
            assert sign_in(self.web[name], name).status_code == 303
        publish_direct(hub, self.token, "alice/detector", manifest_text=manifest("alice/detector") + TRAINER)
        r = self.api.post("/api/v1/projects", json={
            "namespace": "alice", "name": "street", "task": "detection", "classes": ["car", "person"],
            "suggest": {"package": "alice/detector", "range": "*", "solver": "detect"}})
        assert r.status_code == 201, r.text
        r = self.api.put(f"/api/v1/projects/{PROJECT}/members/ann", json={"role": "annotator"})
        assert r.status_code == 204, r.text
        self.ids = add_items(hub, PROJECT, 3)
        for item in self.ids[:2]:
            self.save(item)

    def save(self, item: int) -> None:
        r = self.api.put(f"/api/v1/projects/{PROJECT}/items/{item}/labels", json={"revision": 0, "labels": BOXES})
        assert r.status_code == 200, r.text

    def post(self, who: str, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        """Press a button or send a form as ``who``'s browser: the form with the page's CSRF token."""
        client = self.web[who]
        page = client.get(PAGE)
        token = csrf(page.text if page.status_code == 200 else client.get("/projects").text)
        return client.post(PAGE + path, data={"csrf_token": token, **(data or {})})

    def panel(self, who: str = "alice") -> str:
        r = self.web[who].get(PAGE)
        assert r.status_code == 200, r.text
        return section(r.text, "training-h")

    def who(self, session: Any) -> Principal:
        return accounts.resolve_token(session, self.token)

    def claim(self) -> service.Claimed:
        with session_scope(self.hub.context.engine) as session:
            who = self.who(session)
        claimed = service.claim(self.hub.context.engine, who, worker="gpu-box <1>", lease_seconds=600)
        assert claimed is not None
        return claimed

    def worker(self, fn: Any, *args: Any, **kw: Any) -> Any:
        with session_scope(self.hub.context.engine, write=True) as session:
            return fn(session, self.who(session), *args, **kw)


@pytest.fixture
def loop(hub: LiveHub) -> Loop:
    return Loop(hub)


def settings_form(**values: str) -> dict[str, str]:
    return {"every": "", "target": "", "trainer": "", "hyperparameters": "", **values}


def test_owner_changes_the_settings_and_others_see_them_read_only(loop: Loop) -> None:
    panel = loop.panel()
    body = text(panel)
    assert "2 item(s) accepted. Automatic fine-tuning is off." in body and "No fine-tune yet." in body
    assert 'id="training-settings-form"' in panel and 'id="queue-finetune"' in panel

    r = loop.post("alice", "/-/training", settings_form(every="5", hyperparameters="epochs=4\nlr = 0.0005",
                                                        trainer="finetune"))
    assert r.status_code == 303 and r.headers["location"] == f"{PAGE}?training=saved#training-h", r.text
    page = loop.web["alice"].get(r.headers["location"])
    panel = section(page.text, "training-h")
    body = text(panel)
    assert "Fine-tuning settings saved." in body
    assert "A fine-tune is queued after every 5 accepted item(s): the next at 5 accepted (3 more)." in body
    assert "epochs=4, lr=0.0005" in body and "finetune" in body
    assert re.search(r'<textarea id="training-hyperparameters" name="hyperparameters"[^>]*>epochs=4\nlr=0.0005</textarea>',
                     panel)
    with session_scope(loop.hub.context.engine) as session:
        row = session.exec(select(AnnotationProject).where(AnnotationProject.full_name == PROJECT)).one()
        assert (row.finetune_every, row.finetune_trainer, row.finetune_hyperparameters) == (
            5, "finetune", {"epochs": 4, "lr": 0.0005})

    # Bad input: refused with the hub's message in the panel, the form as it was sent, nothing changed.
    for values, status, message in [
        (settings_form(every="five"), 422, "'every' is a whole number of accepted items"),
        (settings_form(every="0"), 422, "every must be 1 to 100000, or null"),
        (settings_form(hyperparameters="epochs 4"), 422, "'epochs 4' is not name=value"),
        (settings_form(hyperparameters="<img>=1"), 422, "'<img>' is not a hyperparameter name"),
        (settings_form(target="not a package"), 422, "target must be a package name"),
        (settings_form(target="bob/model"), 422, "you may not publish to bob/model"),
    ]:
        r = loop.post("alice", "/-/training", values)
        assert r.status_code == status, (values, r.status_code)
        panel = section(r.text, "training-h")
        assert message in text(panel), (values, text(panel))
        assert "<code>invalid_training</code>" in panel and "<details class=\"training-form\" open>" in panel
        assert "<img>" not in r.text  # the sent text comes back as text
    assert 'value="five"' in loop.post("alice", "/-/training", settings_form(every="five")).text
    assert "every 5 accepted" in text(loop.panel())

    # A member who is not an owner sees the settings, no form and no button; a forged post is refused.
    panel = loop.panel("ann")
    assert "Fine-tune after every 5 accepted items" in text(panel) and "epochs=4, lr=0.0005" in text(panel)
    assert "training-settings-form" not in panel and "queue-finetune" not in panel
    r = loop.post("ann", "/-/training", settings_form(every="1"))
    assert r.status_code == 403 and "<code>forbidden</code>" in section(r.text, "training-h")
    r = loop.post("ann", "/-/training-jobs")
    assert r.status_code == 403 and "<code>forbidden</code>" in section(r.text, "training-h")
    assert "every 5 accepted" in text(loop.panel())
    # Without the CSRF token nothing happens.
    r = loop.web["alice"].post(PAGE + "/-/training", data=settings_form(every="2"))
    assert r.status_code == 403 and "every 5 accepted" in text(loop.panel())


def test_a_job_from_the_button_to_its_result(loop: Loop) -> None:
    hub, alice = loop.hub, loop.web["alice"]
    # Hyperparameters the trainer refuses: the button says why, and nothing is queued.
    assert loop.post("alice", "/-/training", settings_form(hyperparameters="epochs=500")).status_code == 303
    r = loop.post("alice", "/-/training-jobs")
    assert r.status_code == 422 and "<code>invalid_training</code>" in section(r.text, "training-h")
    assert "epochs" in text(section(r.text, "training-h")) and "No fine-tune yet." in text(r.text)
    assert loop.post("alice", "/-/training", settings_form(hyperparameters="epochs=2")).status_code == 303

    r = loop.post("alice", "/-/training-jobs")
    assert r.status_code == 303 and r.headers["location"] == f"{PAGE}?training=queued#training-h", r.text
    panel = section(alice.get(r.headers["location"]).text, "training-h")
    body = text(panel)
    assert "Fine-tune queued" in body and "Current job #" in body and "queued" in body
    assert "Waiting for a training worker." in body and "queue-finetune\" disabled" in panel
    assert 'data-poll="/projects/alice/street/-/training"' in panel and "/static/training.js" in panel
    assert 'href="/alice/detector/v/1.0.0">alice/detector@1.0.0</a>' in panel
    # One at a time: a second press says so.
    r = loop.post("alice", "/-/training-jobs")
    assert r.status_code == 409 and "<code>job_active</code>" in section(r.text, "training-h")

    # The poll's JSON: the API's training view, for readers.
    view = alice.get(PAGE + "/-/training", headers={"accept": "application/json"})
    assert view.status_code == 200 and view.headers["cache-control"] == "no-store"
    job = view.json()["jobs"][0]
    assert job["state"] == "queued" and job["hyperparameters"] == {"epochs": 2, "lr": 0.001}
    dataset = job["dataset"]
    assert dataset.startswith("alice/street-data@")

    # A worker takes it and reports: progress, two epochs of curves, its log; then the grid.
    claimed = loop.claim()
    loop.worker(service.heartbeat, claimed.job.id, claimed.lease, progress={"step": 30, "total": 40, "epoch": 2,
                                                                            "loss": 0.75},
                history=HISTORY[:2], log_tail=LOG)
    panel = loop.panel()
    body = text(panel)
    assert '<span class="badge state-running" id="training-state">running</span>' in panel
    assert '<progress id="training-progress" max="40" value="30">' in panel
    assert "step 30 of 40, epoch 2, loss 0.75" in body.replace(" ,", ",") and "worker gpu-box <1>" in body and "attempt 1" in body
    assert "gpu-box &lt;1&gt;" in panel
    assert "&lt;script&gt;alert(&#39;log&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in panel
    assert "<script>alert" not in panel and "<b>bold" not in panel
    assert '<figure id="training-loss-chart"><svg' in panel and '<figure id="training-metric-chart"><svg' in panel
    assert panel.count('class="dot s-loss"') == 2 and panel.count('class="dot s-metric"') == 2
    assert "recall&lt;b&gt;" in panel and "recall<b>" not in panel  # a metric's name is text
    assert "training-preview" not in panel

    digest = service.store_preview(hub.context.uploads, grid_png())
    loop.worker(service.record_preview, claimed.job.id, claimed.lease, digest)
    panel = loop.panel()
    url = f"{PAGE}/-/training-jobs/{claimed.job.id}/preview.png"
    assert f'<img id="training-preview" src="{url}"' in panel
    image = alice.get(url)
    assert image.status_code == 200 and image.content == grid_png()
    assert image.headers["content-type"] == "image/png" and image.headers["cache-control"] == "private, max-age=60"
    assert image.headers["etag"] == f'"{digest}"' and image.headers["x-content-type-options"] == "nosniff"
    again = alice.get(url, headers={"if-none-match": f'"{digest}"'})
    assert again.status_code == 304 and not again.content
    assert loop.web["ann"].get(url).status_code == 200  # a member reads it too

    # It finishes: the fine-tune (published with its lineage) does worse than the base and is kept out.
    lineage = (f'\n[lineage]\nbase = "alice/detector@1.0.0"\ndataset = "{dataset}"\ntrainer = "finetune"\n'
               "metrics = { map50 = 0.61 }\nbase_metrics = { map50 = 0.65 }\n")
    publish_direct(hub, loop.token, "alice/detector", "1.1.0",
                   manifest_text=manifest("alice/detector", "1.1.0", extra=lineage) + TRAINER)
    loop.worker(service.heartbeat, claimed.job.id, claimed.lease, history=HISTORY,
                progress={"step": 40, "total": 40, "epoch": 3, "loss": 0.5})
    done = loop.worker(service.finish, claimed.job.id, claimed.lease, state="done", version="1.1.0", device="cpu",
                       seconds=41.2, log_tail=LOG)
    assert done["promoted"] is False
    panel = loop.panel()
    body = text(panel)
    assert "Last job #" in body and '<span class="badge state-done" id="training-state">done</span>' in panel
    assert "kept the current model: map50 0.61 < 0.65" in body
    assert '<a href="/alice/detector/v/1.1.0" id="training-result-version">alice/detector@1.1.0</a>' in panel
    assert "training-progress" not in panel and "took 41 s" in body and "cpu" in body
    assert panel.count('class="dot s-metric"') == 3 and 'class="ref"' in panel  # the base's dashed line
    assert "<code>" not in panel.split('id="training-log"')[1][:200]  # still text, not markup
    assert 'data-poll' not in panel and "training.js" not in panel and "queue-finetune\" disabled" not in panel

    # A second job, running: the first one moves to the table of earlier jobs.
    loop.save(loop.ids[2])
    assert loop.post("alice", "/-/training-jobs").status_code == 303
    second = loop.claim()
    assert second.job.id != claimed.job.id
    panel = loop.panel()
    assert f"Current job #{second.job.id}" in text(panel) and "Starting." in text(panel)
    table = panel.split('id="training-jobs"')[1]
    row = text(table.split("</tr>")[1])
    assert row.startswith(f"#{claimed.job.id} done alice/detector@1.0.0 → alice/detector@1.1.0 map50 0.65 0.61 no")
    assert '<a href="/alice/detector/v/1.1.0">' in table

    # The poll's JSON follows the running job.
    view = alice.get(PAGE + "/-/training", headers={"accept": "application/json"}).json()
    assert [j["state"] for j in view["jobs"]] == ["running", "done"]
    assert view["settings"]["accepted"] == 3


def test_a_private_projects_panel_preview_and_json_are_404_to_strangers(loop: Loop) -> None:
    hub = loop.hub
    assert loop.post("alice", "/-/training-jobs").status_code == 303
    claimed = loop.claim()
    loop.worker(service.heartbeat, claimed.job.id, claimed.lease, history=HISTORY, log_tail=LOG)
    loop.worker(service.record_preview, claimed.job.id, claimed.lease,
                service.store_preview(hub.context.uploads, grid_png()))
    url = f"{PAGE}/-/training-jobs/{claimed.job.id}/preview.png"
    assert loop.web["alice"].get(url).status_code == 200

    anonymous = browser(hub)
    for client in (loop.web["eve"], anonymous):
        assert client.get(PAGE).status_code in (404, 303)  # the page is 404 (or sign-in) to them
        for path in (url, PAGE + "/-/training"):
            r = client.get(path, headers={"accept": "application/json"})
            assert r.status_code == 404, (path, r.status_code)
            assert r.json()["error"]["code"] in ("project_not_found", "job_not_found")
            assert b"PNG" not in r.content
    r = loop.post("eve", "/-/training", settings_form(every="1"))
    assert r.status_code == 404 and "training-h" not in r.text
    assert loop.post("eve", "/-/training-jobs").status_code == 404
    # A job id under another project's path is not found either, even to its own owner.
    r = loop.api.post("/api/v1/projects", json={"namespace": "alice", "name": "other", "task": "detection",
                                                "classes": ["car"], "private": False})
    assert r.status_code == 201, r.text
    r = loop.web["alice"].get(f"/projects/alice/other/-/training-jobs/{claimed.job.id}/preview.png")
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
    # A failed job says why, in the owner's panel: the hub's message and the log, as text.
    loop.worker(service.finish, claimed.job.id, claimed.lease, state="failed",
                message="trainer_failed: <b>CUDA</b> out of memory", log_tail=LOG)
    panel = loop.panel()
    assert "failed: trainer_failed: <b>CUDA</b> out of memory" in text(panel) and "<b>CUDA" not in panel
    assert '<details class="training-log" open>' in panel and "<script>alert" not in panel
    # A public project's panel is open to everyone (read-only), its poll JSON too.
    page = anonymous.get("/projects/alice/other")
    assert page.status_code == 200 and "No fine-tune yet." in text(section(page.text, "training-h"))
    assert anonymous.get("/projects/alice/other/-/training").status_code == 200


# --- the parts alone ------------------------------------------------------------------------


def test_curves_escape_names_and_skip_what_is_not_a_number() -> None:
    svg = curve_svg([Series("<b>x</b>", "s-metric", [(1, 0.5), (2, 0.75)])], title="T <i>", y_label="y&",
                    reference=("base <m>", 0.6))
    assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg and "T &lt;i&gt;" in svg and "y&amp;" in svg
    assert "base &lt;m&gt; 0.6" in svg and svg.count("<circle") == 2
    history: list[dict[str, Any]] = [{"epoch": 1, "loss": float("nan"), "metrics": {"acc": "high"}},
                                     {"epoch": 2, "loss": 0.4, "metrics": {"acc": 0.9}}, "junk"]  # type: ignore[list-item]
    assert loss_curve_svg(history).count("<circle") == 1
    assert metric_curve_svg(history, "acc", 0.8).count("<circle") == 1
    assert loss_curve_svg([]) == "" and metric_curve_svg([{"epoch": 1, "loss": 1.0}], "acc") == ""
    flat = loss_curve_svg([{"epoch": 1, "loss": 0.0}])  # one point, no spread: still a chart
    assert flat.count("<circle") == 1 and "nan" not in flat


def test_the_forms_parsing_and_the_outcome_in_words() -> None:
    assert parse_hyperparameters("epochs=8\n lr = 1e-3, name='big', aug=true;flag=False") == {
        "epochs": 8, "lr": 0.001, "name": "big", "aug": True, "flag": False}
    assert parse_hyperparameters("  \n") == {}
    for bad in ("epochs", "=3", "epochs=", "a=1\na=2", "lr=nan", "lr=inf", "1x=2"):
        with pytest.raises(HubError) as caught:
            parse_hyperparameters(bad)
        assert caught.value.code == "invalid_training" and caught.value.status == 422
    assert parse_every("") is None and parse_every("12") == 12
    with pytest.raises(HubError):
        parse_every("1.5")
    base = {"state": "done", "metric": "accuracy", "base_metric": 0.65}
    assert outcome({**base, "result_metric": 0.61, "promoted": False}) == "kept the current model: accuracy 0.61 < 0.65"
    assert outcome({**base, "result_metric": 0.65, "promoted": False}) == "kept the current model: accuracy 0.65 = 0.65"
    assert outcome({**base, "result_metric": 0.7, "promoted": True}).endswith(": accuracy 0.7 > 0.65")
    assert outcome({"state": "failed", "message": "trainer_failed: boom"}) == "failed: trainer_failed: boom"
    assert outcome({"state": "running"}) == ""


# --- in a browser -------------------------------------------------------------------------


@pytest.fixture
def browser_site(make_settings) -> Iterator[LiveHub]:  # type: ignore[no-untyped-def]
    """A hub of its own on SQLite for the browser test (one backend: the page is the same on both)."""
    with running_hub(make_settings("sqlite-file")) as live:
        yield live


def test_the_panel_follows_a_running_job_in_a_browser(chromium: Any, browser_site: LiveHub, screenshots: Path) -> None:
    loop = Loop(browser_site)
    assert loop.post("alice", "/-/training-jobs").status_code == 303
    claimed = loop.claim()
    loop.worker(service.heartbeat, claimed.job.id, claimed.lease, progress={"step": 10, "total": 40, "epoch": 1},
                log_tail="starting\n")
    loop.worker(service.record_preview, claimed.job.id, claimed.lease,
                service.store_preview(browser_site.context.uploads, grid_png()))
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning")
                and not m.text.startswith("Failed to load resource") else None)
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(browser_site.url + f"/login?next={PAGE}")
        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**{PAGE}")
        expect(page.locator("#training-progress")).to_have_js_property("value", 10)
        expect(page.locator("#training-preview")).to_have_js_property("naturalWidth", 96)
        # A heartbeat moves the bar and the log without a reload; a finished epoch draws its point.
        loop.worker(service.heartbeat, claimed.job.id, claimed.lease, progress={"step": 25, "total": 40, "epoch": 1,
                                                                                "loss": 0.8125},
                    log_tail="starting\nstep 25 <ok>\n")
        expect(page.locator("#training-progress")).to_have_js_property("value", 25, timeout=15_000)
        expect(page.locator("#training-loss")).to_have_text("0.8125")
        expect(page.locator("#training-log")).to_have_text("starting\nstep 25 <ok>\n")
        assert page.locator("#training-loss-chart").count() == 0
        loop.worker(service.heartbeat, claimed.job.id, claimed.lease, history=HISTORY[:1],
                    progress={"step": 40, "total": 40, "epoch": 1, "loss": 1.25})
        expect(page.locator("#training-loss-chart circle")).to_have_count(1, timeout=15_000)
        page.screenshot(path=str(screenshots / "training-panel.png"), full_page=True)
    finally:
        context.close()
    assert problems == []
