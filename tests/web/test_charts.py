"""The website's SVG charts and the package page's call snippets as plain functions (no hub, no
browser): the Pareto frontier, the downloads chart's slots and axes, the zoo's labels, and the
curl and Python lines built from a solver's declared inputs."""

from __future__ import annotations

import re
import shlex
from datetime import date, timedelta

import pytest

from cvflow.manifest import TASKS
from web.charts import (
    QUALITY_METRICS,
    ZooPoint,
    downloads_svg,
    nice_ticks,
    pareto_frontier,
    quality_metric,
    zoo_svg,
)
from web.views.catalog import RUNNER_PORT, example_value, solver_usage, use_it

TODAY = date(2026, 12, 4)


def names(points: list[ZooPoint]) -> list[str]:
    return [p.name for p in points]


# --- the Pareto frontier -------------------------------------------------------------------------


def test_the_frontier_keeps_what_nothing_beats_fastest_first() -> None:
    points = [ZooPoint("a/fast", 0.70, 1, None), ZooPoint("a/slow-and-worse", 0.68, 9, None),
              ZooPoint("a/mid", 0.80, 5, None), ZooPoint("a/dominated", 0.75, 6, None),
              ZooPoint("a/best", 0.90, 30, None)]
    assert names(pareto_frontier(points)) == ["a/fast", "a/mid", "a/best"]


def test_equal_speed_keeps_the_more_accurate_and_equal_accuracy_the_faster() -> None:
    points = [ZooPoint("a/x", 0.8, 5, None), ZooPoint("a/y", 0.9, 5, None), ZooPoint("a/z", 0.9, 7, None)]
    assert names(pareto_frontier(points)) == ["a/y"]
    twins = [ZooPoint("a/one", 0.9, 5, None), ZooPoint("a/two", 0.9, 5, None)]
    assert names(pareto_frontier(twins)) == ["a/one", "a/two"]  # neither is better than the other
    assert pareto_frontier([]) == []


def coords(svg: str, selector: str) -> list[tuple[float, float]]:
    match = re.search(rf'<polyline points="([^"]+)" class="{selector}"', svg)
    assert match, f"no polyline {selector}"
    return [(float(a), float(b)) for a, b in (pair.split(",") for pair in match[1].split())]


def centres(svg: str) -> dict[str, tuple[float, float]]:
    return {name: (float(x), float(y)) for x, y, name in
            re.findall(r'<circle(?: class="on-frontier")? cx="([\d.]+)" cy="([\d.]+)" r="[\d.]+"><title>([^:]+):', svg)}


def test_the_zoo_draws_the_frontier_as_a_step_through_its_points_only() -> None:
    points = [ZooPoint("a/fast", 0.70, 1, None), ZooPoint("a/mid", 0.80, 5, None),
              ZooPoint("a/dominated", 0.75, 6, None), ZooPoint("a/best", 0.90, 30, None)]
    svg = zoo_svg(points)
    line = coords(svg, "frontier")
    where = centres(svg)
    for name in ("a/fast", "a/mid", "a/best"):
        assert where[name] in line, name
    assert where["a/dominated"] not in line
    # A step: every segment is horizontal or vertical, and accuracy never falls along it.
    for (x0, y0), (x1, y1) in zip(line, line[1:], strict=False):
        assert x0 == x1 or y0 == y1
        assert x1 >= x0 and y1 <= y0  # right, or up (SVG's y grows downwards)
    assert svg.count('class="on-frontier"') == 3
    assert "Pareto frontier" in svg


def test_zoo_labels_are_full_names_beside_their_markers() -> None:
    points = [ZooPoint("alice/digits-lenet", 0.97, 0.8, 2), ZooPoint("alice/resnet-lite", 0.76, 8.5, 98),
              ZooPoint("bob/vit-small", 0.81, 30, 330)]
    svg = zoo_svg(points)
    labels = {m[3]: (float(m[0]), float(m[1]), m[2]) for m in
              re.findall(r'<text x="([\d.]+)" y="([\d.]+)" class="name" text-anchor="(\w+)">([^<]+)</text>', svg)}
    assert set(labels) == {"alice/digits-lenet", "alice/resnet-lite", "bob/vit-small"}
    radii = {m[1]: float(m[0]) for m in re.findall(r'r="([\d.]+)"><title>([^:]+):', svg)}
    for name, (cx, cy) in centres(svg).items():
        x, y, anchor = labels[name]
        r = radii[name]
        # The text starts (or ends) outside the marker, or sits wholly above or below it.
        clear = (anchor == "start" and x >= cx + r) or (anchor == "end" and x <= cx - r) or \
                (anchor == "middle" and (y <= cy - r or y - 11 >= cy + r))
        assert clear, (name, (x, y, anchor), (cx, cy, r))


def test_the_memory_note_is_left_out_when_no_package_reports_memory() -> None:
    without = zoo_svg([ZooPoint("a/x", 0.9, 2, None), ZooPoint("a/y", 0.8, 1, None)])
    assert '<title id="zoo-title">Accuracy against latency</title>' in without and "MB" not in without
    with_memory = zoo_svg([ZooPoint("a/x", 0.9, 2, 40), ZooPoint("a/y", 0.8, 1, None)])
    assert "bubble area shows memory" in with_memory and "40 MB" in with_memory
    assert zoo_svg([]) == ""


def test_names_in_the_zoo_chart_are_escaped() -> None:
    svg = zoo_svg([ZooPoint("a/<b>", 0.9, 2, None, fine_tune_of="<i>@1.0.0")])
    assert "<b>" not in svg and "<i>" not in svg and "a/&lt;b&gt;" in svg


def test_each_task_has_one_quality_metric_and_the_chart_names_it() -> None:
    assert set(QUALITY_METRICS) <= TASKS
    assert {t: quality_metric(t).key for t in ("classification", "detection", "segmentation", "keypoints", "ocr")} == {
        "classification": "accuracy", "detection": "map50", "segmentation": "miou", "keypoints": "oks_ap",
        "ocr": "accuracy"}
    assert quality_metric("depth").key == quality_metric(None).key == "accuracy"  # the rest: accuracy
    svg = zoo_svg([ZooPoint("a/centernet", 0.93, 8.3, None), ZooPoint("a/tiny", 0.61, 1.5, None)],
                  metric=quality_metric("detection"))
    assert '<title id="zoo-title">mAP@0.5 against latency</title>' in svg
    assert re.search(r'transform="rotate\(-90 [^"]+\)">map50</text>', svg)
    assert "<title>a/centernet: map50 0.93, 8.3 ms, on the Pareto frontier</title>" in svg
    assert "accuracy" not in svg


# --- the downloads chart -------------------------------------------------------------------------


def bars(svg: str) -> list[tuple[float, float, str]]:
    return [(float(x), float(w), day) for x, w, day in
            re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="[\d.]+" class="bar" data-day="([^"]+)"',
                       svg)]


def plot_width(svg: str) -> tuple[float, float]:
    axis = re.search(r'<line x1="([\d.]+)" y1="([\d.]+)" x2="([\d.]+)" y2="\2" class="axis"/>', svg)
    assert axis, "no x axis"
    return float(axis[1]), float(axis[3])


def test_one_active_day_is_one_thin_bar_at_its_date() -> None:
    day = TODAY - timedelta(days=30)
    svg = downloads_svg([{"day": day.isoformat(), "downloads": 3}], today=TODAY)
    (x, width, drawn), = bars(svg)
    left, right = plot_width(svg)
    slot = (right - left) / 90
    assert drawn == day.isoformat()
    assert 0.5 * slot <= width <= slot  # about 1/90 of the plot, not all of it
    assert left + 59 * slot <= x <= left + 60 * slot  # the 60th of the 90 slots: 30 days before today
    today_bar = bars(downloads_svg([{"day": TODAY.isoformat(), "downloads": 1}], today=TODAY))
    assert today_bar[0][0] + today_bar[0][1] <= right and today_bar[0][0] >= right - slot


def test_the_axes_have_round_counts_and_dates_with_today() -> None:
    days = [{"day": (TODAY - timedelta(days=n)).isoformat(), "downloads": n % 7} for n in range(0, 120, 3)]
    svg = downloads_svg(days, today=TODAY)
    ticks = [float(t) for t in re.findall(r'class="tick" text-anchor="end">([\d.]+)</text>', svg)]
    assert ticks == [0, 2, 4, 6]  # the busiest day has 6: steps of 1, 2 or 5 times a power of ten
    assert nice_ticks(0, 1, count=4) == [0, 0.5, 1]  # the chart drops the half: whole downloads only
    assert [t for t in re.findall(r'class="tick" text-anchor="end">([\d.]+)</text>',
                                  downloads_svg([{"day": TODAY.isoformat(), "downloads": 1}], today=TODAY))] == ["0", "1"]
    dates = re.findall(r'class="tick date" text-anchor="\w+" data-day="([^"]+)">([^<]+)</text>', svg)
    assert dates[-1] == (TODAY.isoformat(), "today")
    assert [d for d, _ in dates[:-1]] == ["2026-10-01", "2026-11-01"]  # monthly; Dec 1 would crowd today
    assert [label for _, label in dates[:-1]] == ["Oct 1", "Nov 1"]
    # Days before the 90-day window and empty days draw nothing.
    assert all(TODAY - timedelta(days=89) <= date.fromisoformat(d) for _, _, d in bars(svg))
    assert len(bars(svg)) == len([d for d in days if d["downloads"] and
                                  date.fromisoformat(str(d["day"])) > TODAY - timedelta(days=90)])
    assert downloads_svg([], today=TODAY) == ""


# --- the Use it box's lines ----------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "meaning", "value"), [
    ("integer", "how many guesses (default 3)", 3), ("integer", "default: many", 1),
    ("number", "lowest score, default=0.25", 0.25), ("number", "", 0.5),
    ("string", "one of fast, exact (default fast)", "fast"), ("string", "", "text"),
    ("boolean", "default false", False), ("boolean", "", True),
])
def test_example_values_take_the_declared_default_when_it_fits(kind: str, meaning: str, value: object) -> None:
    assert example_value(kind, meaning) == value


def test_an_image_solver_gets_file_parts_and_form_fields() -> None:
    solver = {"name": "detect", "inputs": {"image": "image: a photo", "min_score": "number: default 0.3",
                                           "top_k": "integer", "label": "string"}}
    call = solver_usage(solver, "http://127.0.0.1:8765")
    assert shlex.split(call["curl"]) == ["curl", "-F", "image=@photo.jpg", "-F", "min_score=0.3", "-F", "top_k=1",
                                         "-F", "label=text", "http://127.0.0.1:8765/solvers/detect/infer"]
    assert "files=[('image', open('photo.jpg', 'rb'))]" in call["python"]
    assert "data={'min_score': '0.3', 'top_k': '1', 'label': 'text'}" in call["python"]
    compile(call["python"], "snippet", "exec")
    assert call["declared"]


def test_a_solver_without_images_gets_a_json_body_and_several_images_repeat_the_part() -> None:
    call = solver_usage({"name": "echo", "inputs": {"text": "string", "times": "integer: default 2"}}, "http://h:1")
    assert shlex.split(call["curl"]) == ["curl", "-H", "content-type: application/json", "-d",
                                         '{"text": "text", "times": 2}', "http://h:1/solvers/echo/infer"]
    assert "json={'text': 'text', 'times': 2}" in call["python"]
    many = solver_usage({"name": "stack", "inputs": {"frames": "images"}}, "http://h:1")
    assert shlex.split(many["curl"])[1:5] == ["-F", "frames=@photo1.jpg", "-F", "frames=@photo2.jpg"]
    undeclared = solver_usage({"name": "detect"}, "http://h:1")
    assert not undeclared["declared"] and "-F image=@photo.jpg" in undeclared["curl"]


def test_use_it_names_the_hub_the_version_and_the_port_the_curl_lines_use() -> None:
    box = use_it("https://hub.example.org", "alice/detector@1.1.0", [{"name": "detect"}, {"oops": 1}, "junk"])  # type: ignore[list-item]
    assert box["login_line"] == "cvflow login --hub https://hub.example.org"
    assert box["env_line"] == "export CVFLOW_HUB=https://hub.example.org"
    assert box["pull_line"] == "cvflow pull alice/detector@1.1.0"
    assert box["install_line"] == "cvflow install alice/detector@1.1.0"
    assert box["run_line"] == f"cvflow run alice/detector@1.1.0 --port {RUNNER_PORT}"
    assert [c["name"] for c in box["solver_calls"]] == ["detect"]
    assert f"127.0.0.1:{RUNNER_PORT}/solvers/detect/infer" in box["solver_calls"][0]["curl"]
