"""The website's pages over a real socket, on SQLite + files and PostgreSQL + S3: what a visitor
finds on each page, and who may see what."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tomllib
from datetime import date
from pathlib import Path

import pytest

from hub.demo import EXAMPLES, load_examples
from tests.helpers import LiveHub, publish
from tests.test_lineage import dataset_text, lineage_toml
from tests.web.support import (
    HTML,
    README,
    Tags,
    browser,
    download,
    listed,
    publish_direct,
    section,
    sign_in,
    text,
)

# --- home and search ------------------------------------------------------------------------


def test_home_lists_tasks_and_recent_and_popular_packages(hub: LiveHub) -> None:
    token = hub.create_user("alice")
    publish_direct(hub, token, "alice/popular-detector", description="Finds cars")
    publish_direct(hub, token, "alice/fresh-classifier", task="classification", description="Sorts cats")
    download(hub, "alice/popular-detector", "1.0.0")

    page = browser(hub).get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert listed(section(page.text, "recent-h")) == ["alice/fresh-classifier", "alice/popular-detector"]
    assert listed(section(page.text, "popular-h")) == ["alice/popular-detector", "alice/fresh-classifier"]
    tasks = section(page.text, "tasks-h")
    for task in ("classification", "detection", "segmentation"):
        assert f'href="/search?task={task}"' in tasks
    assert "Finds cars" in page.text and "1 download updated" in text(section(page.text, "popular-h"))


def test_search_filters_by_task_tag_and_framework(hub: LiveHub) -> None:
    token = hub.create_user("alice")
    publish_direct(hub, token, "alice/torch-faces", tags=("faces",), extra='framework = "torch"')
    publish_direct(hub, token, "alice/onnx-cars", tags=("cars",), extra='framework = "onnx"')
    publish_direct(hub, token, "alice/torch-seg", task="segmentation", tags=("cars",), extra='framework = "torch"')
    client = browser(hub)

    def found(**params: str) -> list[str]:
        r = client.get("/search", params=params)
        assert r.status_code == 200, r.text
        return sorted(listed(r.text))

    assert found(task="detection") == ["alice/onnx-cars", "alice/torch-faces"]
    assert found(tag="cars") == ["alice/onnx-cars", "alice/torch-seg"]
    assert found(framework="torch") == ["alice/torch-faces", "alice/torch-seg"]
    assert found(framework="torch", tag="cars") == ["alice/torch-seg"]
    assert found(q="FACES") == ["alice/torch-faces"]
    # The form shows the filters it applied.
    page = client.get("/search", params={"task": "segmentation", "framework": "torch"}).text
    assert '<option value="segmentation" selected>' in page
    assert 'name="framework" value="torch"' in page


def test_search_sorts_and_paginates(hub: LiveHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from web.views import catalog

    monkeypatch.setattr(catalog, "SEARCH_PER_PAGE", 4)  # the hub serves from this process
    token = hub.create_user("alice")
    names = [f"alice/model-{n:02d}" for n in range(7)]
    for name in names:
        publish_direct(hub, token, name)
    download(hub, "alice/model-05", "1.0.0")
    client = browser(hub)

    by_name = client.get("/search", params={"sort": "name"}).text
    assert listed(by_name) == names[:4]
    assert "7 packages" in text(by_name) and "Page 1 of 2" in text(by_name)
    nxt = re.search(r'<a rel="next" href="\?([^"]+)">', by_name)
    assert nxt and "sort=name" in nxt[1] and "page=2" in nxt[1]
    second = client.get("/search?" + nxt[1].replace("&amp;", "&")).text
    assert listed(second) == names[4:]
    assert 'rel="prev"' in second and 'rel="next"' not in second

    assert listed(client.get("/search", params={"sort": "downloads"}).text)[0] == "alice/model-05"
    assert listed(client.get("/search", params={"sort": "recent"}).text)[0] == "alice/model-06"
    # Past the last page: an empty list, not an error.
    assert listed(client.get("/search", params={"page": "9"}).text) == []
    bad = client.get("/search", params={"sort": "sideways"})
    assert bad.status_code == 400 and "sort must be one of" in bad.text


def test_search_survives_absurd_page_numbers(hub: LiveHub) -> None:
    client = browser(hub)
    for page in ("0", "-3", "abc", "9" * 30):
        r = client.get("/search", params={"page": page})
        assert r.status_code == 200, (page, r.text[:200])


def test_search_with_no_results_says_what_to_try(hub: LiveHub) -> None:
    hub.create_user("alice")
    page = browser(hub).get("/search", params={"q": "unicorn", "task": "depth"})
    assert page.status_code == 200
    words = text(page.text)
    assert "0 packages" in words
    assert "Nothing matches “unicorn” in depth" in words
    assert '<a href="/search">browse everything</a>' in page.text


# --- the package page -------------------------------------------------------------------------


def test_package_published_over_the_api_has_a_page(hub: LiveHub) -> None:
    alice = hub.client(hub.create_user("alice"))
    r = publish(alice, "alice/uploaded", files={"solver.py": b"class Detector: pass\n", "README.md": README})
    assert r.status_code == 201, r.text
    r = alice.post("/api/v1/packages/alice/uploaded/versions/1.0.0/yank", json={"reason": "superseded"})
    assert r.status_code == 200, r.text
    page = browser(hub).get("/alice/uploaded")
    assert page.status_code == 200
    assert "<h1>Digit reader</h1>" in page.text and "This version was yanked: superseded" in text(page.text)


def test_package_page_shows_readme_versions_solvers_files_and_dependencies(hub: LiveHub, detector: str) -> None:
    page = browser(hub).get(f"/{detector}")
    assert page.status_code == 200
    html = page.text
    # The README, rendered from Markdown.
    readme = re.search(r'<div class="readme">(.*?)</div>\s*<aside>', html, re.S)
    assert readme
    assert "<h1>Digit reader</h1>" in readme[1]
    assert "<em>handwritten</em>" in readme[1]
    assert '<a href="https://example.org/lenet" rel="nofollow noopener noreferrer">the paper</a>' in readme[1]
    assert "<table>" in readme[1] and "<td>0.98</td>" in readme[1]
    assert '<code class="language-python">' in readme[1]
    # Versions, newest first, the yanked one marked with its reason.
    versions = section(html, "versions-h")
    assert versions.index("1.1.0") < versions.index("1.0.0")
    assert re.search(r'1\.0\.0</a>.*?yanked</span>\s*<span class="reason">wrong labels</span>', versions, re.S)
    assert versions.count("yanked") == 1
    # Solvers.
    solvers = section(html, "solvers-h")
    assert "<h3>detect</h3>" in solvers and "<code>solver:Detector</code>" in solvers
    rows = [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", solvers, re.S)]
    assert ["image", "image", "a photo"] in rows and ["min_score", "number", ""] in rows
    assert ["boxes", "faces as [x, y, w, h]"] in rows
    assert "Inputs of detect" in solvers and "Outputs of detect" in solvers
    # Files with sizes and sha256.
    files = section(html, "files-h")
    weights = re.search(r'weights\.bin</a></td>\s*<td>([^<]+)</td><td><code class="digest">([0-9a-f]{64})</code>', files)
    assert weights and weights[1] == "2.0 KiB"
    assert weights[2] == hashlib.sha256(b"\0" * 2048).hexdigest()
    assert "cvflow.toml" in files and "README.md" in files
    # Dependencies, and the packages that depend on this one.
    deps = section(html, "deps-h")
    assert re.search(r'<li><a href="/alice/base">alice/base</a> <code>[^<]+</code></li>', deps.split("Used by")[0])
    used_by = deps.split("Used by", 1)[1]
    assert '<a href="/alice/app">alice/app</a>' in used_by and "alice/base" not in used_by
    # Copyable install and run lines.
    assert 'id="install-line" readonly value="cvflow install alice/detector@1.1.0"' in html
    assert 'id="run-line" readonly value="cvflow run alice/detector@1.1.0 --port 8765"' in html
    use = html.split('<section class="use" aria-labelledby="use-h">', 1)[1].split("</section>", 1)[0]
    assert use.count('data-copy="') == 7  # hub: login, CVFLOW_HUB; pull, install, run; the solver: curl, Python
    assert "torch" in text(html)


def test_version_page_shows_the_yanked_version(hub: LiveHub, detector: str) -> None:
    page = browser(hub).get(f"/{detector}/v/1.0.0")
    assert page.status_code == 200
    assert "This version was yanked: wrong labels" in text(page.text)
    assert 'value="cvflow install alice/detector@1.0.0"' in page.text
    assert browser(hub).get(f"/{detector}/v/9.9.9").status_code == 404


def test_download_chart_appears_after_a_download(hub: LiveHub, detector: str) -> None:
    client = browser(hub)
    assert "No downloads yet." in section(client.get(f"/{detector}").text, "downloads-h")
    download(hub, detector, "1.1.0")
    download(hub, detector, "1.0.0")
    download(hub, detector, "1.1.0", "README.md")  # not a download of the version: only its manifest counts
    chart = section(client.get(f"/{detector}").text, "downloads-h")
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in chart
    assert len(re.findall(r'<rect [^>]*class="bar"', chart)) == 1
    today = date.today().isoformat()
    assert f"<td>{today}</td><td>2</td>" in chart.replace("\n", "")


def test_package_page_shows_the_source_of_an_indexed_version(hub: LiveHub) -> None:
    token = hub.create_user("alice")
    commit = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    publish_direct(hub, token, "alice/indexed", source_repository="https://git.example.org/alice/indexed.git",
                   source_commit=commit)
    source = section(browser(hub).get("/alice/indexed").text, "source-h")
    assert 'href="https://git.example.org/alice/indexed.git"' in source
    assert f"<code class=\"digest\">{commit}</code>" in source


def test_private_package_is_a_404_except_to_those_allowed(hub: LiveHub) -> None:
    token = hub.create_user("alice")
    hub.create_user("bob")
    publish_direct(hub, token, "alice/secret-model", private=True, description="Top secret")
    publish_direct(hub, token, "alice/public-model")

    anonymous = browser(hub)
    page = anonymous.get("/alice/secret-model")
    assert page.status_code == 404
    assert "<h1>Not found</h1>" in page.text and "Top secret" not in page.text
    for path in ("/", "/search?q=model", "/alice"):
        assert "secret-model" not in anonymous.get(path).text, path

    bob = browser(hub)
    assert sign_in(bob, "bob").status_code == 303
    assert bob.get("/alice/secret-model").status_code == 404

    alice = browser(hub)
    assert sign_in(alice, "alice", next="/alice/secret-model").headers["location"] == "/alice/secret-model"
    page = alice.get("/alice/secret-model")
    assert page.status_code == 200
    assert "Top secret" in page.text and '<span class="badge">private</span>' in page.text
    assert "alice/secret-model" in listed(alice.get("/search", params={"q": "model"}).text)
    assert page.headers["cache-control"] == "no-store"
    # Counted in the zoo only for those who may see it.
    count = r'<a href="/zoo/detection">detection</a> <span class="meta">(\d+)</span>'
    assert re.search(count, anonymous.get("/zoo").text)[1] == "1"  # type: ignore[index]
    assert re.search(count, alice.get("/zoo").text)[1] == "2"  # type: ignore[index]


# --- model zoo, users and organisations ---------------------------------------------------------


def test_zoo_charts_accuracy_against_latency_with_a_table(hub: LiveHub) -> None:
    token = hub.create_user("alice")
    zoo = {"alice/resnet": (0.76, 8.5, 98), "alice/mobilenet": (0.71, 2.1, 14), "alice/vit": (0.81, 30, 330)}
    for name, (acc, lat, mem) in zoo.items():
        publish_direct(hub, token, name, task="classification",
                       extra=f"\n[metrics]\naccuracy = {acc}\nlatency_ms = {lat}\nmemory_mb = {mem}")
    publish_direct(hub, token, "alice/no-latency", task="classification", extra="\n[metrics]\naccuracy = 0.5")
    publish_direct(hub, token, "alice/yolo", extra="\n[metrics]\naccuracy = 0.5\nlatency_ms = 3")

    page = browser(hub).get("/zoo/classification")
    assert page.status_code == 200
    svg = re.search(r"<svg .*?</svg>", page.text, re.S)
    assert svg and 'role="img"' in svg[0]
    assert len(re.findall(r"<circle ", svg[0])) == 3
    radii = {m[1]: float(m[0]) for m in re.findall(r'r="([\d.]+)"><title>([^:]+):', svg[0])}
    assert radii["alice/vit"] > radii["alice/resnet"] > radii["alice/mobilenet"]  # bubble area by memory
    rows = re.findall(r'<tr><td><a href="/([^"]+)">[^<]+</a></td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td></tr>',
                      page.text)
    assert rows == [("alice/vit", "0.81", "30", "330"), ("alice/resnet", "0.76", "8.5", "98"),
                    ("alice/mobilenet", "0.71", "2.1", "14")]

    index = browser(hub).get("/zoo").text
    assert re.search(r'<a href="/zoo/classification">classification</a> <span class="meta">4</span>', index)
    assert browser(hub).get("/zoo/detection").status_code == 200
    assert browser(hub).get("/zoo/juggling").status_code == 404


def test_the_detection_zoo_judges_by_map50_and_lends_a_fine_tune_its_base_s_latency(hub: LiveHub) -> None:
    token = hub.create_user("alice")
    publish_direct(hub, token, "alice/centernet", extra="\n[metrics]\nmap50 = 0.93\nlatency_ms = 8.3\nrecall = 0.9")
    publish_direct(hub, token, "alice/tiny-det", extra="\n[metrics]\nmap50 = 0.61\nlatency_ms = 1.5")
    publish_direct(hub, token, "alice/slow-det", extra="\n[metrics]\nmap50 = 0.6\nlatency_ms = 20")
    # An accuracy is no detector's quality metric: counted as missing, not plotted.
    publish_direct(hub, token, "alice/accurate-det", extra="\n[metrics]\naccuracy = 0.99\nlatency_ms = 1")
    coco = json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 1, "height": 1}],
                       "annotations": [{"image_id": 1, "category_id": 1}], "categories": [{"id": 1, "name": "cat"}]})
    publish_direct(hub, token, "alice/shots", manifest_text=dataset_text("alice/shots"),
                   files={"annotations/train.json": coco.encode(), "images/train/a.png": b"\x89PNG"})
    # A fine-tune's [metrics] are its validation metrics: map50 without a latency of its own.
    publish_direct(hub, token, "alice/centernet-ft", extra="\n[metrics]\nmap50 = 0.95\n" + lineage_toml(
        "alice/centernet@1.0.0", "alice/shots@1.0.0", metrics="{ map50 = 0.95 }", base_metrics="{ map50 = 0.41 }"))

    page = browser(hub).get("/zoo/detection")
    assert page.status_code == 200
    svg = re.search(r"<svg .*?</svg>", page.text, re.S)
    assert svg and '<title id="zoo-title">mAP@0.5 against latency</title>' in svg[0]
    plotted = dict(re.findall(r"<title>([^:<]+): (?:fine-tune of [^,]+, )?map50 ([\d.]+), [\d.]+ ms", svg[0]))
    assert plotted == {"alice/centernet": "0.93", "alice/tiny-det": "0.61", "alice/slow-det": "0.6",
                       "alice/centernet-ft": "0.95"}
    rows = re.findall(r'<tr><td><a href="/([^"]+)">.*?</td><td>([^<]+)</td><td>([^<]+)</td></tr>', page.text)
    assert rows == [("alice/centernet-ft", "0.95", "8.3"), ("alice/centernet", "0.93", "8.3"),
                    ("alice/tiny-det", "0.61", "1.5"), ("alice/slow-det", "0.6", "20")]  # the base's latency, lent
    # The fine-tune ties its base's latency and beats it: the base falls off the frontier.
    assert re.findall(r'<li><a href="/([^"]+)">', section(page.text, "frontier-h")) == [
        "alice/tiny-det", "alice/centernet-ft"]
    assert "<th scope=\"col\">mAP@0.5 (<code>map50</code>)</th>" in page.text
    note = text(re.search(r'<p class="zoo-count">.*?</p>', page.text, re.S)[0])  # type: ignore[index]
    assert note.startswith("4 packages charted; 1 reports no map50 and latency_ms and is not plotted")
    how = text(re.search(r'<details id="add-metrics".*?</details>', page.text, re.S)[0])  # type: ignore[index]
    assert "here map50 (higher is better)" in how and 'the section "Metrics" of docs/solvers.md' in how
    assert "map50 = 0.9778" in how and "Not plotted: alice/accurate-det" in how
    assert re.search(r'<a href="/zoo/detection">detection</a> <span class="meta">5</span>', browser(hub).get("/zoo").text)


def test_the_demo_detector_is_charted_on_the_detection_zoo(hub: LiveHub, tmp_path: Path) -> None:
    """examples/digits-detector, published as ``cvflow-hub serve --demo`` publishes it, is on the
    detection chart at its manifest's map50 and latency_ms."""
    shutil.copytree(EXAMPLES / "digits-detector", tmp_path / "digits-detector",
                    ignore=shutil.ignore_patterns("__pycache__"))
    lines = list(load_examples(hub.context, tmp_path))
    assert lines == ["demo: published demo/digits-detector@1.0.0"], lines
    metrics = tomllib.loads((EXAMPLES / "digits-detector" / "cvflow.toml").read_text())["metrics"]
    page = browser(hub).get("/zoo/detection").text
    assert (f"<title>demo/digits-detector: map50 {metrics['map50']:.4g}, {metrics['latency_ms']:g} ms, "
            "on the Pareto frontier</title>") in page


def test_user_and_organisation_pages_list_packages_and_members(hub: LiveHub) -> None:
    alice_token = hub.create_user("alice")
    hub.create_user("bob")
    alice = hub.client(alice_token)
    assert alice.post("/api/v1/orgs", json={"name": "vision-lab"}).status_code == 201
    assert alice.put("/api/v1/orgs/vision-lab/members/bob", json={"role": "member"}).status_code == 200
    publish_direct(hub, alice_token, "vision-lab/segmenter", task="segmentation")
    publish_direct(hub, alice_token, "alice/detector")
    client = browser(hub)

    org = client.get("/vision-lab").text
    assert "organisation" in text(org)
    members = section(org, "members-h")
    assert re.search(r'href="/alice">alice</a> <span class="meta">owner', members)
    assert re.search(r'href="/bob">bob</a> <span class="meta">member', members)
    assert listed(section(org, "pkgs-h")) == ["vision-lab/segmenter"]

    user = client.get("/alice").text
    assert listed(section(user, "pkgs-h")) == ["alice/detector"]
    assert 'aria-labelledby="members-h"' not in user
    assert "No packages you can see." in client.get("/bob").text
    missing = client.get("/nobody")
    assert missing.status_code == 404 and "no user or organisation" in missing.text


def test_namespace_page_pages_through_many_packages(hub: LiveHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from web.views import catalog

    monkeypatch.setattr(catalog, "NAMESPACE_PER_PAGE", 2)  # the hub serves from this process
    token = hub.create_user("alice")
    for name in ("alice/a", "alice/b", "alice/c"):
        publish_direct(hub, token, name)
    client = browser(hub)
    first = client.get("/alice").text
    assert listed(first) == ["alice/a", "alice/b"] and "Page 1 of 2" in text(first)
    assert '<h2 id="pkgs-h">Packages <span class="meta">3</span></h2>' in first
    assert listed(client.get("/alice?page=2").text) == ["alice/c"]


def test_api_errors_stay_json_and_pages_stay_html(hub: LiveHub) -> None:
    api = hub.client().get("/api/v1/packages/alice/missing", headers=HTML)
    assert api.status_code == 404 and api.headers["content-type"].startswith("application/json")
    page = browser(hub).get("/alice/missing/v/1.0.0/extra")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in page.text
    assert {"href": "/"} in Tags(page.text).of("a")  # a way back


def test_every_fixed_site_path_is_a_reserved_namespace() -> None:
    # /{namespace} pages come after the site's own paths, so a user named like one would be unreachable.
    from cvflow.names import RESERVED_NAMESPACES
    from web import routes

    firsts = {r.path.strip("/").split("/")[0] for r in routes()}
    fixed = {f for f in firsts if f and not f.startswith("{")}
    assert fixed and fixed <= RESERVED_NAMESPACES, fixed - RESERVED_NAMESPACES
