"""The demo project's acceptance rate: how much of demo/digits-detector's suggestions an annotator keeps.

By default a fresh `cvflow-hub serve --demo` on loopback (SQLite + files in a temporary data dir)
holds the project demo/digits-shifted: 40 canvases of digits in a style the detector was not
trained on, with their ground truth in examples/digits-detector/demo/truth.json. The real worker
(`cvflow annotate suggest`) installs the detector (torch) into a CVFLOW_HOME, serves it with the
runner and posts its suggestions. Then a simulated annotator takes the items from the queue, one
after another, and saves through the API what the truth says, suggestion by suggestion (best
first, each true box used once):

| suggestion | the annotator | the hub counts |
| --- | --- | --- |
| matches a true box (IoU >= 0.5) of its class | keeps it unchanged | accepted |
| matches a true box of another class | keeps it, with the true class and box | edited |
| matches no true box | leaves it out | rejected |
| (a true box no suggestion matched) | draws it | added |

The table has a row per model version from the project's document (``stats.per_model_version``:
each saved item under the model version of its latest save) with its acceptance rate, accepted
over suggestions, and the precision and recall of those suggestions against the truth, over the
project's saved items. This annotator keeps exactly the suggestions that are right, so the
acceptance rate equals the precision at IoU 0.5; the class-agnostic precision (right box, any
class) shows how much a fix of the class alone saves. The script checks that the hub counted
each save as its own rules say.

    .venv/bin/python bench/annotate_loop.py                       # about 1-3 minutes (builds the torch venv)
    .venv/bin/python bench/annotate_loop.py --home ~/.cache/cvflow-bench-home   # keep the venv for next time
    .venv/bin/python bench/annotate_loop.py --items 20            # leave 20 items for a later model version

After a fine-tune, run it again against the same hub with the new version, so that the table
has a row for each:

    .venv/bin/python bench/annotate_loop.py --items 20 --data-dir DIR       # the hub's data stays in DIR
    .venv/bin/python bench/annotate_loop.py --data-dir DIR --publish PKG    # publish PKG (e.g. 1.1.0) first
    .venv/bin/python bench/annotate_loop.py --hub URL --token T --model-version 1.1.0   # or any running hub
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Procs, free_port, report, tool, workdir  # noqa: E402
from client_pull import cvflow_run  # noqa: E402

PROJECT = "demo/digits-shifted"
TRUTH = ROOT / "examples" / "digits-detector" / "demo" / "truth.json"
IOU = 0.5
Box = list[float]


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def read_truth(path: Path) -> dict[str, list[tuple[str, Box]]]:
    """``{file_name: [(class, bbox), ...]}`` from a COCO file."""
    coco = json.loads(path.read_text())
    names = {c["id"]: str(c["name"]) for c in coco["categories"]}
    by_id: dict[int, list[tuple[str, Box]]] = {im["id"]: [] for im in coco["images"]}
    for a in coco["annotations"]:
        by_id[a["image_id"]].append((names[a["category_id"]], [float(v) for v in a["bbox"]]))
    return {im["file_name"]: by_id[im["id"]] for im in coco["images"]}


def match(suggestions: list[dict[str, Any]], truth: list[tuple[str, Box]]) -> tuple[dict[int, int], dict[int, int]]:
    """Suggestions (best first) to true boxes, each true box used once: ``(same class, other class)``,
    each ``{suggestion: true box}``. The right class is matched first, over every suggestion; then
    the boxes that only the class keeps apart."""
    free = set(range(len(truth)))
    right: dict[int, int] = {}
    for i, s in enumerate(suggestions):
        best = max((t for t in free if truth[t][0] == s["class"]), key=lambda t: iou(s["bbox"], truth[t][1]), default=None)
        if best is not None and iou(s["bbox"], truth[best][1]) >= IOU:
            right[i] = best
            free.discard(best)
    wrong: dict[int, int] = {}
    for i, s in enumerate(suggestions):
        if i in right:
            continue
        best = max(free, key=lambda t: iou(s["bbox"], truth[t][1]), default=None)
        if best is not None and iou(s["bbox"], truth[best][1]) >= IOU:
            wrong[i] = best
            free.discard(best)
    return right, wrong


def labels_for(suggestions: list[dict[str, Any]], truth: list[tuple[str, Box]]) -> list[dict[str, Any]]:
    """What the simulated annotator saves (see the module's table)."""
    right, wrong = match(suggestions, truth)
    labels = [{"class": s["class"], "bbox": s["bbox"], "from": i} for i, s in enumerate(suggestions) if i in right]
    labels += [{"class": truth[t][0], "bbox": truth[t][1], "from": i} for i, t in wrong.items()]
    used = set(right.values()) | set(wrong.values())
    labels += [{"class": name, "bbox": box, "from": None} for t, (name, box) in enumerate(truth) if t not in used]
    return labels


@dataclass
class Row:
    items: int = 0
    suggestions: int = 0
    truth: int = 0
    right: int = 0       # suggestions matching a true box of their class
    box_right: int = 0   # ... of any class
    accepted: int = 0    # as the hub's rules count the saved labels (hub/services/annotation/labels.py)
    edited: int = 0
    rejected: int = 0
    added: int = 0

    def add(self, item: dict[str, Any], truth: list[tuple[str, Box]]) -> None:
        suggestions, labels = item["suggestions"] or [], item["labels"]
        right, wrong = match(suggestions, truth)
        self.items += 1
        self.suggestions += len(suggestions)
        self.truth += len(truth)
        self.right += len(right)
        self.box_right += len(right) + len(wrong)
        used = set()
        for label in labels:
            if label["from"] is None:
                self.added += 1
                continue
            used.add(label["from"])
            s = suggestions[label["from"]]
            same = s["class"] == label["class"] and all(abs(a - b) <= 1.0 for a, b in zip(s["bbox"], label["bbox"],
                                                                                          strict=True))
            self.accepted += same
            self.edited += not same
        self.rejected += len(suggestions) - len(used)


@contextmanager
def demo_hub(args: argparse.Namespace) -> Iterator[tuple[str, str, Path]]:
    """``(hub URL, token, work dir)``: the hub given, or `cvflow-hub serve --demo` on a data dir."""
    with workdir("annotate-loop", args.dir) as tmp, Procs(tmp) as procs:
        if args.hub:
            token = args.token or os.environ.get("CVFLOW_TOKEN")
            if not token:
                sys.exit("--hub needs --token (or CVFLOW_TOKEN): a token of a member who may annotate")
            yield args.hub.rstrip("/"), token, tmp
            return
        data = Path(args.data_dir) if args.data_dir else tmp / "hub"
        hub = [tool("cvflow-hub"), "--data-dir", str(data)]
        subprocess.run([*hub, "migrate"], check=True, capture_output=True)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        procs.serve("hub", [*hub, "serve", "--demo", "--port", str(port), "--log-level", "warning"],
                    url + "/api/v1/openapi.json", cwd=ROOT)
        # The demo project's owner is the user `demo` that --demo creates.
        token = subprocess.run([*hub, "token", "create", "--user", "demo", "--scope", "read", "--scope", "annotate",
                                "--scope", "publish:demo", "--name", "bench"],
                               check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        yield url, token, tmp


def annotate(api: httpx.Client, project: str, truth: dict[str, list[tuple[str, Box]]], limit: int | None) -> int:
    """Take items from the queue and save the annotator's labels; how many were saved."""
    saved = 0
    while limit is None or saved < limit:
        r = api.post(f"/api/v1/projects/{project}/queue")
        r.raise_for_status()
        item = r.json()["item"]
        if item is None:
            break
        if item["file_name"] not in truth:
            sys.exit(f"{item['file_name']} is not in the ground truth: is {project} the demo project?")
        labels = labels_for(item["suggestions"] or [], truth[item["file_name"]])
        r = api.put(f"/api/v1/projects/{project}/items/{item['id']}/labels",
                    json={"revision": item["revision"], "labels": labels, "duration_ms": 0})
        if r.status_code != 200:
            sys.exit(f"saving {item['file_name']} failed: {r.status_code} {r.text}")
        saved += 1
    return saved


def done_items(api: httpx.Client, project: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for status in ("done", "approved"):
        page = 1
        while True:
            r = api.get(f"/api/v1/projects/{project}/items", params={"status": status, "page": page, "per_page": 100})
            r.raise_for_status()
            out += r.json()["items"]
            if page * 100 >= r.json()["total"]:
                break
            page += 1
    return out


def pct(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", default=PROJECT, help="the project [default: %(default)s]")
    parser.add_argument("--model-version", help="pin the project's suggestion model to this version first"
                        " [default: the newest the project's range allows]")
    parser.add_argument("--items", type=int, help="annotate at most this many items [default: all left]")
    parser.add_argument("--truth", type=Path, default=TRUTH, help="COCO ground truth [default: the demo's]")
    parser.add_argument("--home", type=Path, help="the worker's CVFLOW_HOME, kept (and its venvs reused) [default:"
                        " a temporary one]")
    parser.add_argument("--publish", type=Path, action="append", default=[],
                        help="publish this package directory first (e.g. a fine-tuned demo/digits-detector)")
    parser.add_argument("--hub", help="use this running hub instead of starting one (with --token)")
    parser.add_argument("--token", help="with --hub: a token that may annotate the project")
    parser.add_argument("--data-dir", help="the started hub's data dir, kept afterwards [default: a temporary one]")
    parser.add_argument("--dir", help="where the temporary files go [default: the system temp dir]")
    args = parser.parse_args()
    truth = read_truth(args.truth)

    with demo_hub(args) as (url, token, tmp):
        home = args.home or tmp / "home"
        api = httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=60, trust_env=False)
        for package in args.publish:
            print(cvflow_run(home, url, "publish", str(package), token=token, timeout=600).stdout.strip(), flush=True)
        if args.model_version:
            suggest = api.get(f"/api/v1/projects/{args.project}").raise_for_status().json()["suggest"]
            r = api.patch(f"/api/v1/projects/{args.project}", json={"suggest": {**suggest, "range": args.model_version}})
            if r.status_code != 200:
                sys.exit(f"pinning the model version failed: {r.status_code} {r.text}")

        start = time.perf_counter()
        worker = json.loads(cvflow_run(home, url, "annotate", "suggest", args.project, "--json", token=token,
                                       timeout=900).stdout)
        worker_s = time.perf_counter() - start
        start = time.perf_counter()
        saved = annotate(api, args.project, truth, args.items)
        annotate_s = time.perf_counter() - start

        doc = api.get(f"/api/v1/projects/{args.project}").raise_for_status().json()
        mine: dict[str | None, Row] = {}
        for item in done_items(api, args.project):
            # A saved item keeps the suggestions it was saved with: a worker never changes it.
            mine.setdefault(item["suggestion_version"], Row()).add(item, truth.get(item["file_name"], []))

    rows, mismatches = [], []
    for hub_row in doc["stats"]["per_model_version"]:
        version = hub_row["model_version"]
        row = mine.get(version, Row())
        counts = (hub_row["accepted"], hub_row["edited"], hub_row["rejected"], hub_row["added"])
        if counts != (row.accepted, row.edited, row.rejected, row.added) or hub_row["items"] != row.items:
            mismatches.append(f"{version}: the hub counts {hub_row['items']} items {counts}, the saved labels"
                              f" {row.items} items {(row.accepted, row.edited, row.rejected, row.added)}")
        suggestions = hub_row["accepted"] + hub_row["edited"] + hub_row["rejected"]
        rows.append([version or "(none)", hub_row["items"], suggestions, *counts,
                     f"**{pct(hub_row['accepted'], suggestions)}**", pct(row.right, row.suggestions),
                     pct(row.right, row.truth), pct(row.box_right, row.suggestions)])
    where = (f"the hub {args.hub}" if args.hub else f"`cvflow-hub serve --demo` (data dir {args.data_dir})"
             if args.data_dir else "a fresh `cvflow-hub serve --demo`")
    notes = [
        f"Project {args.project} on {where}"
        f" ({doc['counts']['done'] + doc['counts']['approved']} of {doc['counts']['total']} items saved, model"
        f" {doc['suggest']['package'] if doc['suggest'] else '-'}@{doc.get('model_version') or '?'}). This run:"
        f" the worker suggested {worker['items']} items ({worker.get('suggestions', '?')} suggestions) in"
        f" {worker_s:.1f} s, installing and starting the runner included; {saved} items saved in {annotate_s:.1f} s.",
        "Acceptance rate: accepted / suggestions, the hub's counts. Precision and recall: suggestions against"
        f" the ground truth ({args.truth.name}) at IoU {IOU} with the right class, each true box matched once;"
        " 'any class' counts a right box with a wrong class too. This annotator accepts exactly the right"
        " suggestions, so the acceptance rate is the precision. The rates do not depend on the machine's load;"
        " the seconds do.",
    ]
    if mismatches:
        notes.insert(0, "**The hub's statistics disagree with the saved labels:** " + "; ".join(mismatches))
    report("annotate_loop", f"Suggestions used on {args.project}, per model version",
           ["model version", "items", "suggestions", "accepted", "edited", "rejected", "added", "acceptance rate",
            "precision", "recall", "precision (any class)"], rows, notes)
    if mismatches:
        sys.exit(1)


if __name__ == "__main__":
    main()
