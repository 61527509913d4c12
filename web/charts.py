"""Charts drawn as SVG on the server: the model zoo's quality-vs-speed bubbles (each task judged
by its own metric, :data:`QUALITY_METRICS`), the download history, how an annotation project's
suggestions were used per model version, and a fine-tune's loss and validation-metric curves per
epoch. No JavaScript; the numbers are also in a
table beside each chart."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape
from typing import Any


@dataclass(frozen=True)
class QualityMetric:
    """How the model zoo judges one task's packages: the ``[metrics]`` key it reads (higher is
    better), the name its pages show, and what the number is."""

    key: str
    label: str
    meaning: str


#: Each task's quality metric, the one table the zoo reads (docs/solvers.md, "Metrics"); a task
#: not named here is judged by :data:`DEFAULT_QUALITY`. Higher is better for every one of them:
#: a lower-is-better number (an error rate) would turn the Pareto frontier upside down.
QUALITY_METRICS: dict[str, QualityMetric] = {
    "classification": QualityMetric("accuracy", "Accuracy", "the share of held-out images given the right class"),
    "detection": QualityMetric("map50", "mAP@0.5", "COCO mean average precision over the classes, a box found when "
                               "its IoU with a true one is 0.5 or more"),
    "segmentation": QualityMetric("miou", "mIoU", "the mean over the classes of the intersection over union of the "
                                  "predicted and the true masks"),
    "keypoints": QualityMetric("oks_ap", "OKS AP", "COCO keypoint average precision, averaged over object keypoint "
                               "similarity thresholds 0.50 to 0.95"),
    "ocr": QualityMetric("accuracy", "Accuracy", "the share of held-out images whose text is read exactly"),
}
DEFAULT_QUALITY = QualityMetric("accuracy", "Accuracy", "the share of held-out inputs answered right")


def quality_metric(task: str | None) -> QualityMetric:
    """The metric the zoo judges ``task``'s packages by."""
    return QUALITY_METRICS.get(task or "", DEFAULT_QUALITY)


@dataclass(frozen=True)
class ZooPoint:
    name: str
    #: The package's value of its task's quality metric (:func:`quality_metric`): higher is better.
    quality: float
    latency_ms: float
    memory_mb: float | None
    #: The base a fine-tune came from, as the reader may see it (``name@version`` or "a private
    #: package"); drawn as a diamond labelled "fine-tune of ...". None: not a fine-tune.
    fine_tune_of: str | None = None


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering ``lo``..``hi``."""
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks across a log10 range ``lo``..``hi`` (exponents); decades only when wide."""
    steps = (1.0,) if hi - lo > 2.5 else (1.0, 2.0, 5.0)
    out = []
    for e in range(math.floor(lo), math.ceil(hi) + 1):
        for m in steps:
            v = m * 10.0**e
            if lo <= math.log10(v) <= hi:
                out.append(v)
    return out


def pareto_frontier(points: list[ZooPoint]) -> list[ZooPoint]:
    """The points nothing beats: no other point is at least as fast and at least as good (its
    quality metric) and strictly better at one of the two. Sorted fastest first, so quality rises
    along it: the best quality on offer for a latency budget is the last frontier point within it."""
    frontier: list[ZooPoint] = []
    best = -math.inf
    # Fastest first; among equally fast ones the best first, which dominates the rest.
    for p in sorted(points, key=lambda p: (p.latency_ms, -p.quality)):
        if p.quality > best:
            frontier.append(p)
            best = p.quality
        elif p.quality == best and frontier and frontier[-1].latency_ms == p.latency_ms:
            frontier.append(p)  # an exact tie with a frontier point: neither dominates the other
    return frontier


#: Rough width of one character of a point's label (13px, bold), to keep labels apart.
_CHAR_W = 7.8
_LABEL_H = 14.0


def _place_label(cx: float, cy: float, r: float, width: float, taken: list[tuple[float, float, float, float]],
                 box: tuple[float, float, float, float]) -> tuple[float, float, str]:
    """Where a point's label goes: beside the point (right, left, above, below, then further
    out), never over its own marker, preferring a place inside the plot that overlaps no label
    or marker already drawn. Returns the text's x, baseline y and anchor, and records its box."""
    left, top, right, bottom = box
    gap = r + 4
    candidates = []
    for step in (0.0, 1.0, 2.0):
        dy = step * _LABEL_H
        candidates += [(cx + gap, cy + 4 - dy, "start"), (cx - gap, cy + 4 - dy, "end"),
                       (cx, cy - gap - 2 - dy, "middle"), (cx, cy + gap + 11 + dy, "middle"),
                       (cx + gap, cy + 4 + dy, "start"), (cx - gap, cy + 4 + dy, "end")]

    def extent(c: tuple[float, float, str]) -> tuple[float, float, float, float]:
        x, y, anchor = c
        x0 = x if anchor == "start" else x - width if anchor == "end" else x - width / 2
        return x0, y - _LABEL_H + 3, x0 + width, y + 3

    def cost(c: tuple[float, float, str]) -> float:
        x0, y0, x1, y1 = extent(c)
        overlap = sum(max(0.0, min(x1, b[2]) - max(x0, b[0])) * max(0.0, min(y1, b[3]) - max(y0, b[1]))
                      for b in taken)
        outside = max(0.0, left - x0) + max(0.0, x1 - (right + 12)) + max(0.0, top - y0) + max(0.0, y1 - bottom)
        return overlap + outside * 40

    best = min(candidates, key=cost)  # min keeps the first of equals: the preferred place
    taken.append(extent(best))
    return best


def zoo_svg(points: list[ZooPoint], *, metric: QualityMetric = DEFAULT_QUALITY, width: int = 640,
            height: int = 400) -> str:
    """The task's quality ``metric`` (y) against latency (x, log scale), bubble area by memory
    (when any package reports it), as GluonCV draws it; each point labelled with its package's
    full name, and the Pareto frontier as a step line through the points nothing beats."""
    if not points:
        return ""
    pad_l, pad_r, pad_t, pad_b = 56, 16, 30, 44
    lat = [max(p.latency_ms, 1e-3) for p in points]
    lo, hi = math.log10(min(lat)), math.log10(max(lat))
    if hi - lo < 0.5:
        mid = (hi + lo) / 2
        lo, hi = mid - 0.25, mid + 0.25
    margin = (hi - lo) * 0.12  # room for the bubbles at either end
    lo, hi = lo - margin, hi + margin
    accs = [p.quality for p in points]
    a_lo, a_hi = min(accs), max(accs)
    if a_hi - a_lo < 0.02:
        mid = (a_hi + a_lo) / 2
        a_lo, a_hi = mid - 0.01, mid + 0.01
    a_margin = (a_hi - a_lo) * 0.15
    a_lo, a_hi = a_lo - a_margin, a_hi + a_margin
    mems = [p.memory_mb for p in points if p.memory_mb]
    m_hi = max(mems) if mems else 1.0
    left, right, top, bottom = pad_l, width - pad_r, pad_t, height - pad_b

    def x(v: float) -> float:
        return left + (math.log10(max(v, 1e-3)) - lo) / (hi - lo) * (right - left)

    def y(v: float) -> float:
        return bottom - (v - a_lo) / (a_hi - a_lo) * (bottom - top)

    title = f"{escape(metric.label)} against latency" + ("; bubble area shows memory" if mems else "")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="zoo-title" class="chart zoo-chart">',
        f'<title id="zoo-title">{title}</title>',
    ]
    for a in nice_ticks(a_lo, a_hi):
        parts.append(f'<line x1="{left}" y1="{y(a):.1f}" x2="{right}" y2="{y(a):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y(a) + 4:.1f}" class="tick" text-anchor="end">{a:g}</text>')
    for v in _log_ticks(lo, hi):
        parts.append(f'<line x1="{x(v):.1f}" y1="{top}" x2="{x(v):.1f}" y2="{bottom}" class="grid"/>'
                     f'<text x="{x(v):.1f}" y="{bottom + 16}" class="tick" text-anchor="middle">{v:g}</text>')
    parts += [
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" class="axis"/>',
        f'<text x="{(left + right) / 2}" y="{height - 6}" class="label" text-anchor="middle">'
        "latency (ms, log scale) — faster is left</text>",
        f'<text x="14" y="{(top + bottom) / 2}" class="label" text-anchor="middle" '
        f'transform="rotate(-90 14 {(top + bottom) / 2})">{escape(metric.key)}</text>',
    ]
    frontier = pareto_frontier(points)
    on_frontier = {id(p) for p in frontier}
    if frontier:  # a step: each frontier point's quality holds until the next, faster-to-slower
        coords = [(x(frontier[0].latency_ms), y(frontier[0].quality))]
        for p in frontier[1:]:
            coords += [(x(p.latency_ms), coords[-1][1]), (x(p.latency_ms), y(p.quality))]
        coords.append((right, coords[-1][1]))
        names = ", ".join(p.name for p in frontier)
        parts.append(f'<polyline points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in coords)}" class="frontier">'
                     f"<title>Pareto frontier: {escape(names)}</title></polyline>")
        parts.append(f'<g class="legend"><line x1="{right - 176}" y1="12" x2="{right - 156}" y2="12" class="frontier"/>'
                     f'<text x="{right - 150}" y="16" class="tick">Pareto frontier (bold)</text></g>')
    radius = {id(p): 5 + 22 * math.sqrt(p.memory_mb / m_hi) if p.memory_mb else 5.0 for p in points}
    taken = [(x(p.latency_ms) - radius[id(p)], y(p.quality) - radius[id(p)],
              x(p.latency_ms) + radius[id(p)], y(p.quality) + radius[id(p)]) for p in points]
    taken.append((right - 180, 0.0, right, 20.0))  # the legend
    for p in sorted(points, key=lambda p: -(p.memory_mb or 0)):  # big bubbles first, small ones on top
        r = radius[id(p)]
        cx, cy = x(p.latency_ms), y(p.quality)
        mark = ' class="on-frontier"' if id(p) in on_frontier else ""
        lineage = f" (fine-tune of {p.fine_tune_of.split('/', 1)[-1]})" if p.fine_tune_of is not None else ""
        lx, ly, anchor = _place_label(cx, cy, r, _CHAR_W * len(p.name + lineage), taken,
                                      (left, top, right, bottom))
        label = (f'<text x="{lx:.1f}" y="{ly:.1f}" class="name" text-anchor="{anchor}">{escape(p.name)}'
                 + (f'<tspan class="lineage">{escape(lineage)}</tspan>' if lineage else "") + "</text>")
        memory = f", {p.memory_mb:g} MB" if p.memory_mb else ""
        best = ", on the Pareto frontier" if mark else ""
        if p.fine_tune_of is not None:  # a fine-tune: a diamond, and whose fine-tune it is
            parts.append(
                f'<g class="point fine-tune"><path{mark} d="M{cx:.1f} {cy - r:.1f}L{cx + r:.1f} {cy:.1f}L{cx:.1f} '
                f'{cy + r:.1f}L{cx - r:.1f} {cy:.1f}Z"><title>{escape(p.name)}: fine-tune of {escape(p.fine_tune_of)}, '
                f"{escape(metric.key)} {p.quality:.4g}, {p.latency_ms:g} ms{memory}{best}</title></path>{label}</g>"
            )
            continue
        parts.append(
            f'<g class="point"><circle{mark} cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}">'
            f"<title>{escape(p.name)}: {escape(metric.key)} {p.quality:.4g}, {p.latency_ms:g} ms{memory}{best}</title>"
            "</circle>"
            f"{label}</g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _date_ticks(first: date, last: date) -> list[date]:
    """The x axis's dates: the first of each month in ``first``..``last``, and ``last`` (today);
    a month's label that would crowd today's (within 12 days) or the left edge's is left out."""
    ticks = []
    d = date(first.year, first.month, 1)
    while d <= last:
        if d >= first and (last - d).days >= 12:
            ticks.append(d)
        d = date(d.year + d.month // 12, d.month % 12 + 1, 1)
    return [*ticks, last]


def downloads_svg(days: list[dict[str, Any]], *, today: date | None = None, span: int = 90,
                  width: int = 640, height: int = 160) -> str:
    """Downloads per day as bars: one slot for each of the ``span`` days up to ``today``, so a
    single busy day is one thin bar at its date; a y scale with round ticks and dates below."""
    if not days:
        return ""
    last = today or date.today()
    first = last - timedelta(days=span - 1)
    counts: dict[date, int] = {}
    for d in days:
        day = date.fromisoformat(str(d["day"]))
        if first <= day <= last:
            counts[day] = counts.get(day, 0) + int(d["downloads"])
    pad_l, pad_r, pad_t, pad_b = 44, 12, 10, 24
    left, right, top, bottom = pad_l, width - pad_r, pad_t, height - pad_b
    ticks = nice_ticks(0, max(counts.values(), default=0) or 1, count=4)
    ticks = [t for t in ticks if t == int(t)] or [0.0, 1.0]  # whole downloads only
    y_hi = max(ticks[-1], max(counts.values(), default=1))
    slot = (right - left) / span

    def y(v: float) -> float:
        return bottom - v / y_hi * (bottom - top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="downloads per day, {first.isoformat()} to {last.isoformat()}" class="chart downloads">']
    for t in ticks:
        parts.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{right}" y2="{y(t):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y(t) + 4:.1f}" class="tick" text-anchor="end">{t:g}</text>')
    for tick in _date_ticks(first, last):
        tx = left + ((tick - first).days + 0.5) * slot
        anchor = "end" if tick == last else "middle"
        label = "today" if tick == last else f"{tick:%b} {tick.day}"
        parts.append(f'<line x1="{tx:.1f}" y1="{bottom}" x2="{tx:.1f}" y2="{bottom + 4}" class="axis"/>'
                     f'<text x="{tx + (4 if tick == last else 0):.1f}" y="{bottom + 17}" class="tick date" '
                     f'text-anchor="{anchor}" data-day="{tick.isoformat()}">{label}</text>')
    parts += [f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>',
              f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" class="axis"/>']
    for day, n in sorted(counts.items()):
        if n <= 0:
            continue
        i = (day - first).days
        h = bottom - y(n)
        parts.append(f'<rect x="{left + i * slot + slot * 0.1:.2f}" y="{y(n):.1f}" width="{slot * 0.8:.2f}" '
                     f'height="{h:.1f}" class="bar" data-day="{day.isoformat()}"><title>{day.isoformat()}: {n}'
                     f"</title></rect>")
    parts.append("</svg>")
    return "".join(parts)


#: The parts of a save, in the order the usage chart stacks them (docs/annotation.md).
USAGE_PARTS = ("accepted", "edited", "rejected", "added")


def usage_svg(versions: list[dict[str, Any]], *, width: int = 640, bar_height: int = 26) -> str:
    """How the suggestions were used per model version: one bar per version, stacked
    accepted / edited / rejected / added, scaled to the largest total."""
    rows = [(str(v.get("model_version") or "no suggestions"), [int(v.get(k) or 0) for k in USAGE_PARTS])
            for v in versions]
    if not rows:
        return ""
    pad_l, pad_r, pad_t, gap = 150, 16, 28, 10
    height = pad_t + len(rows) * (bar_height + gap) + 24
    left, right = pad_l, width - pad_r
    top = max(max(sum(counts) for _, counts in rows), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="usage-title" class="chart usage">',
        '<title id="usage-title">Suggestions accepted, edited, rejected, and labels added by hand, per model version</title>',
    ]
    x = left
    for name in USAGE_PARTS:  # the legend, in stacking order
        parts.append(f'<rect x="{x}" y="6" width="12" height="12" class="seg-{name}"/>'
                     f'<text x="{x + 16}" y="16" class="tick">{name}</text>')
        x += 16 + 8 * len(name) + 18
    for t in nice_ticks(0, top):
        tx = left + t / top * (right - left)
        parts.append(f'<line x1="{tx:.1f}" y1="{pad_t}" x2="{tx:.1f}" y2="{height - 22}" class="grid"/>'
                     f'<text x="{tx:.1f}" y="{height - 6}" class="tick" text-anchor="middle">{t:g}</text>')
    for i, (name, counts) in enumerate(rows):
        y = pad_t + i * (bar_height + gap)
        label = escape(name if len(name) <= 20 else name[:19] + "…")
        parts.append(f'<g class="version"><text x="{left - 8}" y="{y + bar_height / 2 + 5:.1f}" class="name" '
                     f'text-anchor="end">{label}</text>')
        x0 = float(left)
        for part, n in zip(USAGE_PARTS, counts, strict=True):
            w = n / top * (right - left)
            if n:
                parts.append(f'<rect x="{x0:.1f}" y="{y}" width="{w:.1f}" height="{bar_height}" class="seg-{part}">'
                             f"<title>{escape(name)}: {n} {part}</title></rect>")
            x0 += w
        parts.append("</g>")
    parts.append(f'<line x1="{left}" y1="{pad_t}" x2="{left}" y2="{height - 22}" class="axis"/>')
    parts.append("</svg>")
    return "".join(parts)


# --- fine-tuning curves (the project page's training panel) --------------------------------


@dataclass(frozen=True)
class Series:
    """One line of a curve chart: its legend name, its CSS class and its (x, y) points."""

    name: str
    css: str
    points: list[tuple[float, float]]


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (a worker's report may hold NaN, a
    string or nothing; the chart skips those points rather than failing the page)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def curve_svg(series: list[Series], *, title: str, y_label: str, reference: tuple[str, float] | None = None,
              width: int = 640, height: int = 240) -> str:
    """Lines per epoch (x) with a dot and a tooltip per point, and an optional dashed
    horizontal ``reference`` (label, value), e.g. the base model's metric. Every text in it
    (names, labels) is escaped: metric names come from packages."""
    series = [s for s in series if s.points]
    if not series:
        return ""
    pad_l, pad_r, pad_t, pad_b = 56, 16, 30, 40
    left, right, top, bottom = pad_l, width - pad_r, pad_t, height - pad_b
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points] + ([reference[1]] if reference else [])
    x_lo, x_hi = min(xs), max(xs)
    if x_hi - x_lo < 1:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    y_lo, y_hi = min(ys), max(ys)
    span = y_hi - y_lo
    if span < 1e-9:
        span = abs(y_hi) * 0.1 or 0.1
        y_lo, y_hi = y_lo - span / 2, y_hi + span / 2
    else:
        y_lo, y_hi = y_lo - span * 0.08, y_hi + span * 0.08

    def px(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * (right - left)

    def py(v: float) -> float:
        return bottom - (v - y_lo) / (y_hi - y_lo) * (bottom - top)

    title_id = "curve-" + "".join(c if c.isalnum() else "-" for c in title.lower())[:40]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{title_id}" class="chart curve">',
        f'<title id="{title_id}">{escape(title)}</title>',
    ]
    for t in nice_ticks(y_lo, y_hi):
        if y_lo <= t <= y_hi:
            parts.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{right}" y2="{py(t):.1f}" class="grid"/>'
                         f'<text x="{left - 6}" y="{py(t) + 4:.1f}" class="tick" text-anchor="end">{t:.4g}</text>')
    for t in nice_ticks(x_lo, x_hi, count=min(8, max(2, int(x_hi - x_lo) + 1))):
        if t == int(t) and x_lo <= t <= x_hi:  # epochs are whole numbers
            parts.append(f'<text x="{px(t):.1f}" y="{bottom + 16}" class="tick" text-anchor="middle">{int(t)}</text>')
    parts += [
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" class="axis"/>',
        f'<text x="{(left + right) / 2}" y="{height - 6}" class="label" text-anchor="middle">epoch</text>',
        f'<text x="14" y="{(top + bottom) / 2}" class="label" text-anchor="middle" '
        f'transform="rotate(-90 14 {(top + bottom) / 2})">{escape(y_label)}</text>',
    ]
    if reference is not None:
        name, value = reference
        parts.append(f'<g class="reference"><line x1="{left}" y1="{py(value):.1f}" x2="{right}" y2="{py(value):.1f}" '
                     f'class="ref"><title>{escape(name)}: {value:.4g}</title></line>'
                     f'<text x="{right - 4}" y="{py(value) - 5:.1f}" class="tick" text-anchor="end">'
                     f"{escape(name)} {value:.4g}</text></g>")
    x = left
    for s in series:  # the legend
        label = escape(s.name if len(s.name) <= 32 else s.name[:31] + "…")
        parts.append(f'<line x1="{x}" y1="12" x2="{x + 16}" y2="12" class="line {s.css}"/>'
                     f'<text x="{x + 20}" y="16" class="tick">{label}</text>')
        x += 20 + 8 * min(len(s.name), 32) + 18
    for s in series:
        pts = sorted(s.points)
        coords = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in pts)
        parts.append(f'<g class="series"><polyline points="{coords}" class="line {s.css}"/>')
        for a, b in pts:
            parts.append(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="3" class="dot {s.css}">'
                         f"<title>{escape(s.name)}, epoch {a:g}: {b:.4g}</title></circle>")
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _epoch_points(history: list[dict[str, Any]], value: Any) -> list[tuple[float, float]]:
    out = []
    for i, entry in enumerate(history):
        if not isinstance(entry, dict):
            continue
        epoch = _finite(entry.get("epoch"))
        y = _finite(value(entry))
        if y is not None:
            out.append((epoch if epoch is not None else float(i + 1), y))
    return out


def loss_curve_svg(history: list[dict[str, Any]]) -> str:
    """A training job's loss per epoch (``history`` as the job JSON has it: ``[{"epoch",
    "loss", "metrics"}]``); empty when no epoch reported a loss."""
    points = _epoch_points(history, lambda e: e.get("loss"))
    return curve_svg([Series("training loss", "s-loss", points)], title="Training loss per epoch", y_label="loss")


def metric_names(history: list[dict[str, Any]], metric: str | None) -> list[str]:
    """The validation metrics a job's history reports, the deciding ``metric`` first."""
    names: list[str] = []
    for entry in history:
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        for name in metrics if isinstance(metrics, dict) else ():
            if isinstance(name, str) and name not in names:
                names.append(name)
    if metric in names:
        names.remove(metric)
        names.insert(0, metric)
    return names


def metric_curve_svg(history: list[dict[str, Any]], metric: str | None, base_metric: float | None = None) -> str:
    """The validation metric(s) per epoch, the deciding one first and solid, with the base
    model's value of the deciding metric as a dashed line: a fine-tune is promoted only when it
    ends above that line (docs/training.md)."""
    series = []
    # More lines than four are unreadable; the table beside the chart has them all.
    for i, name in enumerate(metric_names(history, metric)[:4]):
        points = _epoch_points(history, lambda e, n=name: (e.get("metrics") or {}).get(n))
        series.append(Series(name, "s-metric" if i == 0 else f"s-other{i}", points))
    base = _finite(base_metric)
    reference = (f"base {metric}", base) if base is not None and metric else None
    return curve_svg(series, title="Validation metric per epoch", y_label=metric or "metric", reference=reference)
