"""The downloads chart, the model zoo's frontier and the package page's Use it box in headless
Chromium, measured as drawn: one active day is one bar a ninetieth of the plot wide at its date,
the frontier's step line passes through exactly the packages nothing beats, labels clear their
markers, and a copy button copies the solver's curl line. Screenshots go to
``artifacts/screenshots/``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import running_hub
from tests.helpers import LiveHub
from tests.web.support import DESKTOP, SOLVER, clipboard_context, download, publish_direct
from web.views.catalog import RUNNER_PORT

#: accuracy, latency (ms), memory (MB or None): two of them are beaten on both counts.
ZOO = {"carol/fast-net": (0.71, 1.2, None), "carol/big-net": (0.93, 40.0, 300.0),
       "carol/slow-and-worse": (0.70, 9.0, 80.0), "carol/middling": (0.80, 45.0, None)}
FRONTIER = ["carol/fast-net", "carol/big-net"]
MARKUP = "<img src=x onerror=window.__xss='input'>"


@pytest.fixture(scope="module")
def site(make_settings) -> Iterator[LiveHub]:  # type: ignore[no-untyped-def]
    """One hub for the module: four classifiers with metrics, one without, a detector with
    declared inputs and a download today, and a package whose input descriptions hold markup."""
    with running_hub(make_settings("sqlite-file")) as live:
        token = live.create_user("carol")
        for name, (acc, lat, mem) in ZOO.items():
            memory = f"\nmemory_mb = {mem}" if mem else ""
            publish_direct(live, token, name, task="classification",
                           extra=f"\n[metrics]\naccuracy = {acc}\nlatency_ms = {lat}{memory}")
        publish_direct(live, token, "carol/unmeasured", task="classification", extra="\n[metrics]\naccuracy = 0.99")
        publish_direct(live, token, "carol/finder", "2.0.0", files={"solver.py": SOLVER},
                       solver_extra='inputs = { image = "image: a photo", min_score = "number: default 0.4" }')
        download(live, "carol/finder", "2.0.0")
        publish_direct(live, token, "carol/planted", files={"solver.py": SOLVER},
                       solver_extra=f"inputs = {{ image = {json.dumps('image: ' + MARKUP)}, "
                                    f"top_k = {json.dumps('integer: (default <script>window.__xss=1</script>)')} }}")
        yield live


@pytest.fixture
def page(chromium: Any, site: LiveHub) -> Iterator[Any]:
    with clipboard_context(chromium, site.url, **DESKTOP) as ctx:
        yield ctx.new_page()


def test_one_active_day_is_one_thin_bar_at_today_with_dates_below(page: Any, site: LiveHub, screenshots: Path) -> None:
    page.goto(site.url + "/carol/finder")
    chart = page.locator("svg.downloads")
    expect(chart).to_be_visible()
    bars = chart.locator("rect.bar")
    assert bars.count() == 1
    axis = chart.locator("line.axis").last.bounding_box()  # the y axis; the x axis is drawn just before it
    x_axis = page.evaluate("""() => { const lines = [...document.querySelectorAll('svg.downloads line.axis')];
        const wide = lines.map(l => l.getBoundingClientRect()).sort((a, b) => b.width - a.width)[0];
        return {x: wide.x, width: wide.width}; }""")
    bar = bars.bounding_box()
    assert axis and bar
    slot = x_axis["width"] / 90
    assert 0.5 * slot <= bar["width"] <= slot, (bar, x_axis)  # about 1/90 of the plot, not the whole width
    assert x_axis["x"] + x_axis["width"] - slot - 1 <= bar["x"] <= x_axis["x"] + x_axis["width"]  # today: the last slot
    dates = chart.locator("text.date")
    assert dates.count() >= 3  # at least two month starts in 90 days, and today
    assert dates.last.text_content() == "today"
    assert all(dates.nth(i).is_visible() for i in range(dates.count()))
    ticks = [t for t in chart.locator("text.tick:not(.date)").all_text_contents()]
    assert ticks == ["0", "1"]
    page.locator("section[aria-labelledby=downloads-h]").screenshot(path=str(screenshots / "downloads-one-day.png"))


def test_the_zoo_draws_the_frontier_through_the_undominated_and_notes_the_unmeasured(
        page: Any, site: LiveHub, screenshots: Path) -> None:
    page.goto(site.url + "/zoo/classification")
    svg = page.locator("svg.zoo-chart")
    expect(svg).to_be_visible()
    assert svg.locator("circle").count() == len(ZOO)  # carol/unmeasured is not plotted
    centres = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('svg.zoo-chart circle')].map(
        c => [c.querySelector('title').textContent.split(':')[0], [+c.getAttribute('cx'), +c.getAttribute('cy')]]))""")
    vertices = page.evaluate("""() => document.querySelector('svg.zoo-chart polyline.frontier').getAttribute('points')
        .trim().split(/\\s+/).map(p => p.split(',').map(Number))""")
    on_line = sorted(name for name, c in centres.items() if c in vertices)
    assert on_line == sorted(FRONTIER)
    assert sorted(page.evaluate("""() => [...document.querySelectorAll('svg.zoo-chart .on-frontier')]
        .map(c => c.querySelector('title').textContent.split(':')[0])""")) == sorted(FRONTIER)
    # The frontier list beside the table, fastest first; every package has its row.
    assert page.locator("#frontier-h + p + ol.frontier li a").all_text_contents() == FRONTIER
    assert page.locator("table tbody tr").count() == len(ZOO)
    # Labels are the full names, and no label covers its own marker.
    overlaps = page.evaluate("""() => [...document.querySelectorAll('svg.zoo-chart g.point')].flatMap(g => {
        const a = g.querySelector('circle').getBoundingClientRect(), b = g.querySelector('text.name').getBoundingClientRect();
        const hit = a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
        return hit ? [g.querySelector('text.name').textContent] : []; })""")
    assert overlaps == []
    assert sorted(svg.locator("text.name").all_text_contents()) == sorted(ZOO)
    # The one without latency is counted, named, and told how to add metrics.
    note = page.locator("p.zoo-count")
    expect(note).to_contain_text("4 packages charted; 1 reports no accuracy and latency_ms")
    note.get_by_role("link", name="how to add metrics").click()
    expect(page.locator("#add-metrics")).to_be_visible()
    page.locator("#add-metrics summary").click()
    expect(page.locator("#add-metrics")).to_contain_text("latency_ms = 0.147")
    expect(page.locator("#add-metrics").get_by_role("link", name="carol/unmeasured")).to_be_visible()
    page.screenshot(path=str(screenshots / "zoo-frontier.png"), full_page=True)


def test_the_use_it_box_copies_a_curl_line_with_the_solver_s_inputs(page: Any, site: LiveHub,
                                                                    screenshots: Path) -> None:
    page.goto(site.url + "/carol/finder")
    box = page.locator("section.use")
    expect(box.get_by_text(site.url, exact=True)).to_be_visible()
    curl = page.get_by_label("With curl")
    expected = f"curl -F image=@photo.jpg -F min_score=0.4 http://127.0.0.1:{RUNNER_PORT}/solvers/detect/infer"
    assert curl.input_value() == expected
    copy = page.locator('button[data-copy="curl-detect"]')
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == expected
    python = page.locator('button[data-copy="python-detect"]')
    python.click()
    expect(python).to_have_text("Copied")
    snippet = page.evaluate("navigator.clipboard.readText()")
    assert snippet.startswith("import httpx\n") and "data={'min_score': '0.4'}" in snippet
    assert page.get_by_label("Point the client at this hub").input_value() == f"cvflow login --hub {site.url}"
    box.screenshot(path=str(screenshots / "package-use-it.png"))


def test_markup_in_declared_inputs_runs_nothing(page: Any, site: LiveHub) -> None:
    page.on("dialog", lambda dialog: dialog.dismiss())
    page.goto(site.url + "/carol/planted")
    expect(page.get_by_label("With curl")).to_have_value(
        f"curl -F image=@photo.jpg -F top_k=1 http://127.0.0.1:{RUNNER_PORT}/solvers/detect/infer")
    assert page.evaluate("() => window.__xss") is None
    expect(page.locator("table.io")).to_contain_text(MARKUP)  # shown as text in the inputs table
