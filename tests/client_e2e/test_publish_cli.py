"""`cvflow init`, `validate`, `publish`, `yank`, `search` and `info` against a live hub."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from cvflow.api import HubClient
from cvflow.progress import transfer_bar
from cvflow.publish import UploadState
from cvflow.solver import Context, Image
from tests.client_e2e._publish_helpers import (
    blob_digests,
    cli_env,
    run_cli,
    run_script,
    upload_ids,
    write_package,
)
from tests.conftest import free_port
from tests.runner._images import grey_png

MiB = 1 << 20


@pytest.fixture
def token(hub):  # type: ignore[no-untyped-def]
    return hub.create_user("alice")


@pytest.fixture
def env(hub, token, tmp_path):  # type: ignore[no-untyped-def]
    return cli_env(tmp_path / "home", hub.url, token)


def publish_json(env, directory, *args):  # type: ignore[no-untyped-def]
    result = run_cli(env, "publish", str(directory), "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_init_validate_publish_info(hub, env, tmp_path):
    pkg = tmp_path / "hello"
    made = run_cli(env, "init", str(pkg), "--name", "alice/hello")
    assert made.exit_code == 0, made.output
    assert {p.name for p in pkg.iterdir()} == {"cvflow.toml", "solver.py", "README.md", "weights"}

    checked = run_cli(env, "validate", str(pkg))
    assert checked.exit_code == 0, checked.output
    assert "ok: alice/hello 0.1.0: 4 files, 1 solver, 1 weight" in checked.stdout

    # The scaffold's solver is real: it runs and answers with JSON (tests/runner serves it over REST).
    sys.path.insert(0, str(pkg))
    try:
        import solver  # type: ignore[import-not-found]

        weights = {"weights/threshold.json": pkg / "weights" / "threshold.json"}
        context = Context(package="alice/hello", version="0.1.0", solver="predict", package_dir=pkg, weights=weights)
        answer = solver.Solver(context).infer(Image.from_bytes(grey_png([[250, 240, 230]])))
    finally:
        sys.path.remove(str(pkg))
        sys.modules.pop("solver", None)
    assert json.loads(json.dumps(answer)) == {"label": "bright", "mean": 240.0, "threshold": 128}

    published = run_cli(env, "publish", str(pkg))
    assert published.exit_code == 0, published.output
    url = f"{hub.url}/api/v1/packages/alice/hello/versions/0.1.0"
    page = f"{hub.url}/alice/hello/v/0.1.0"  # the version's page on the website
    assert published.stdout.splitlines() == [f"published alice/hello@0.1.0 (4 files, {_size(pkg)})",
                                             f"page: {page}", f"api:  {url}"]
    assert httpx.get(page).status_code == 200
    assert "4 to upload" in published.stderr  # progress lines go to stderr
    assert httpx.get(url).json()["version"] == "0.1.0"

    shown = run_cli(env, "info", "alice/hello@^0.1")
    assert shown.exit_code == 0, shown.output
    for text in ("alice/hello@0.1.0 (best match for ^0.1)", "predict  (solver:Solver)", "weights/threshold.json",
                 "dependencies: none"):
        assert text in shown.stdout, shown.stdout


def _size(pkg):  # type: ignore[no-untyped-def]
    total = sum(p.stat().st_size for p in pkg.rglob("*") if p.is_file())
    return f"{total / 1024:.1f} KiB"


def test_init_refuses_to_overwrite_a_package(env, tmp_path):
    pkg = write_package(tmp_path / "p", "alice/p")
    before = (pkg / "cvflow.toml").read_text()
    result = run_cli(env, "init", str(pkg), "--name", "alice/other")
    assert result.exit_code == 1
    assert "already has cvflow.toml" in result.stderr
    assert (pkg / "cvflow.toml").read_text() == before
    bad = run_cli(env, "init", str(tmp_path / "q"), "--name", "Alice/Q")
    assert bad.exit_code == 1 and "error:" in bad.stderr and "Traceback" not in bad.output


def test_publishing_a_version_twice_is_refused_with_the_hubs_message(hub, env, tmp_path):
    pkg = write_package(tmp_path / "p", "alice/p")
    assert run_cli(env, "publish", str(pkg)).exit_code == 0
    again = run_cli(env, "publish", str(pkg))
    assert again.exit_code == 1
    assert "alice/p@1.0.0 is already published" in again.stderr
    assert "[version_exists]" in again.stderr
    assert "Traceback" not in again.output


def test_publish_uploads_only_the_blobs_the_hub_lacks(hub, env, tmp_path):
    files = {"weights/a.bin": b"a" * 4000, "weights/b.bin": b"b" * 3000, "labels.txt": b"cat\ndog\n",
             "copy.txt": b"cat\ndog\n"}
    pkg = write_package(tmp_path / "p", "alice/p", files=files, weights=("weights/a.bin", "weights/b.bin"),
                        extra="allow_pickle = true")
    first = publish_json(env, pkg)
    # Largest first, and two files with the same bytes are one blob, sent once.
    assert first["files"] == 6
    assert [u["path"] for u in first["uploaded"]] == ["weights/a.bin", "weights/b.bin", "cvflow.toml",
                                                      "solver.py", "copy.txt"]
    before = blob_digests(hub)

    (pkg / "weights/b.bin").write_bytes(b"B" * 3000)
    toml = pkg / "cvflow.toml"
    toml.write_text(toml.read_text().replace('version = "1.0.0"', 'version = "1.1.0"'))
    second = publish_json(env, pkg)
    assert second["version"] == "1.1.0" and second["present"] == 3  # a.bin, solver.py, the text
    # Only the changed file and the manifest (whose version changed) travel.
    assert sorted(u["path"] for u in second["uploaded"]) == ["cvflow.toml", "weights/b.bin"]
    new = blob_digests(hub) - before
    assert new == {hashlib.sha256(b"B" * 3000).hexdigest(), hashlib.sha256(toml.read_bytes()).hexdigest()}


def test_an_interrupted_upload_resumes_where_the_hub_left_off(hub, env, token, tmp_path):
    big = os.urandom(6 * MiB)
    digest = hashlib.sha256(big).hexdigest()
    pkg = write_package(tmp_path / "p", "alice/p", files={"weights/big.bin": big}, weights=("weights/big.bin",),
                        extra="allow_pickle = true")
    # A publish that was cut off after the first 5 MiB chunk: the session is open on the
    # hub and its location is kept where publish keeps it.
    with HubClient(hub.url, token) as client:
        location = client.start_upload(len(big))["location"]
        assert client.upload_chunk(location, 0, big[: 5 * MiB]) == 5 * MiB
    state = UploadState(tmp_path / "home" / "state" / "uploads")
    state.save(digest, hub=hub.url, size=len(big), location=location, path="weights/big.bin")
    assert (state.root / f"{digest}.json").is_file()
    session_id = location.rsplit("/", 1)[1]
    assert upload_ids(hub) == {session_id}

    result = run_cli(env, "publish", str(pkg), "--json")
    assert result.exit_code == 0, result.output
    assert "resuming weights/big.bin at 5.0 MiB of 6.0 MiB" in result.stderr
    big_upload = next(u for u in json.loads(result.stdout)["uploaded"] if u["path"] == "weights/big.bin")
    assert big_upload["resumed_from"] == 5 * MiB
    # The kept session was finished (a new one would have left it open) and the state is gone.
    assert upload_ids(hub) == set()
    assert digest in blob_digests(hub)
    assert not (state.root / f"{digest}.json").exists()
    got = httpx.get(f"{hub.url}/api/v1/packages/alice/p/versions/1.0.0/files/weights/big.bin")
    assert hashlib.sha256(got.content).hexdigest() == digest


def test_a_stale_upload_state_starts_a_new_upload(hub, env, tmp_path):
    data = b"w" * 1000
    digest = hashlib.sha256(data).hexdigest()
    pkg = write_package(tmp_path / "p", "alice/p", files={"weights/w.onnx": data}, weights=("weights/w.onnx",))
    state = UploadState(tmp_path / "home" / "state" / "uploads")
    state.save(digest, hub=hub.url, size=len(data), location="/api/v1/uploads/gone", path="weights/w.onnx")
    body = publish_json(env, pkg)
    assert next(u for u in body["uploaded"] if u["path"] == "weights/w.onnx")["resumed_from"] is None
    assert not (state.root / f"{digest}.json").exists()


def test_publish_with_a_bad_manifest_lists_every_problem_and_uploads_nothing(hub, env, tmp_path):
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "cvflow.toml").write_text('[package]\nname = "alice/p"\nversion = "1.0"\ndescripton = "typo"\n')
    result = run_cli(env, "publish", str(pkg))
    assert result.exit_code == 1
    for field in ("package.version", "package.descripton", "package.description"):
        assert field in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert blob_digests(hub) == set() and upload_ids(hub) == set()


def test_publish_with_missing_files_uploads_nothing(hub, env, tmp_path):
    pkg = write_package(tmp_path / "p", "alice/p", weights=("weights/missing.onnx",))
    result = run_cli(env, "publish", str(pkg))
    assert result.exit_code == 1
    assert "weights[0].path: weight 'weights/missing.onnx' is not in the package" in result.stderr
    assert blob_digests(hub) == set()


def test_publish_with_a_wrong_token_shows_the_hubs_message(hub, token, tmp_path):
    pkg = write_package(tmp_path / "p", "alice/p")
    result = run_cli(cli_env(tmp_path / "home", hub.url, token[:-4] + "xxxx"), "publish", str(pkg))
    assert result.exit_code == 1
    assert "error: the token is unknown or revoked [unauthenticated]" in result.stderr
    nobody = run_cli(cli_env(tmp_path / "home", hub.url, None), "publish", str(pkg))
    assert nobody.exit_code == 1
    assert f"not logged in to {hub.url}: run `cvflow login`" in nobody.stderr


def test_publish_without_a_hub_says_it_cannot_be_reached(tmp_path):
    pkg = write_package(tmp_path / "p", "alice/p")
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli(cli_env(tmp_path / "home", url, "cvf_" + "x" * 40), "publish", str(pkg))
    assert result.exit_code == 1
    assert f"error: cannot reach the hub at {url}" in result.stderr
    assert "Traceback" not in result.output


def test_publish_empty_files_and_legacy_cvpm_packages(hub, env, tmp_path):
    pkg = write_package(tmp_path / "p", "alice/p", files={"pkg/__init__.py": b""})
    assert publish_json(env, pkg)["files"] == 3  # cvflow.toml, solver.py and the empty one

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "cvpm.toml").write_text(
        '[package]\nname = "Old_Model"\nversion = "0.0.1"\ndescription = "from CVPM"\n\n'
        '[[solvers]]\nname = "Detect Faces"\nclass = "old_model.solver.Detector"\n'
    )
    (legacy / "old_model").mkdir()
    (legacy / "old_model" / "solver.py").write_text("class Detector: ...\n")
    refused = run_cli(env, "publish", str(legacy))
    assert refused.exit_code == 1 and "--namespace" in refused.stderr
    body = publish_json(env, legacy, "--namespace", "alice")
    assert body["package"] == "alice/old-model"  # Old_Model by the documented CVPM name rule (docs/indexer.md)
    doc = httpx.get(body["url"]).json()
    assert {f["path"] for f in doc["files"]} == {"cvflow.toml", "cvpm.toml", "old_model/solver.py"}
    assert doc["manifest"]["solvers"] == [{"name": "detect-faces", "class": "old_model.solver:Detector",
                                           "description": None, "batch": None, "inputs": None,
                                           "outputs": None, "suggest": None}]


def test_private_packages_stay_hidden_from_others(hub, env, tmp_path):
    pkg = write_package(tmp_path / "p", "alice/secret")
    publish_json(env, pkg, "--private")
    anonymous = run_cli(cli_env(tmp_path / "home", hub.url, None), "info", "alice/secret")
    assert anonymous.exit_code == 1 and "no package alice/secret" in anonymous.stderr
    assert run_cli(env, "info", "alice/secret").exit_code == 0


def test_search_and_info_json(hub, env, tmp_path):
    write_package(tmp_path / "a", "alice/face-finder")
    write_package(tmp_path / "b", "alice/cat-counter", extra='license = "MIT"')
    for d in ("a", "b"):
        assert run_cli(env, "publish", str(tmp_path / d)).exit_code == 0

    found = json.loads(run_cli(env, "search", "face", "--json").stdout)
    assert [p["name"] for p in found["results"]] == ["alice/face-finder"]
    assert found["total"] == 1
    listing = run_cli(env, "search", "--task", "detection", "--sort", "name")
    assert listing.exit_code == 0, listing.output
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["package", "latest", "task", "downloads", "description"]
    assert lines[1].split()[:3] == ["alice/cat-counter", "1.0.0", "detection"]
    assert lines[2].split()[0] == "alice/face-finder"
    assert "page 1 of 1, 2 package(s)" in listing.stdout
    assert "no packages match 'zebra'" in run_cli(env, "search", "zebra").stdout

    info = json.loads(run_cli(env, "info", "alice/cat-counter", "--json").stdout)
    assert info["version"] is None
    assert info["package"]["name"] == "alice/cat-counter" and info["package"]["license"] == "MIT"
    assert [v["version"] for v in info["package"]["versions"]] == ["1.0.0"]
    pinned = json.loads(run_cli(env, "info", "alice/cat-counter@1.0.0", "--json").stdout)
    assert {f["path"] for f in pinned["version"]["files"]} == {"cvflow.toml", "solver.py"}
    assert pinned["version"]["dependencies"] == {}

    unknown = run_cli(env, "info", "alice/nope")
    assert unknown.exit_code == 1
    assert "error: no package alice/nope [package_not_found]" in unknown.stderr
    no_match = run_cli(env, "info", "alice/cat-counter@^2")
    assert no_match.exit_code == 1
    assert "no version of alice/cat-counter matches ^2 (versions: 1.0.0)" in no_match.stderr
    assert run_cli(env, "info", "not-a-name").exit_code == 1


def test_yank_then_info_shows_it_and_ranges_skip_it(hub, env, tmp_path):
    pkg = write_package(tmp_path / "p", "alice/p", dependencies={"alice/base": "^1.0"})
    for version in ("1.0.0", "1.1.0"):
        toml = pkg / "cvflow.toml"
        toml.write_text(toml.read_text().replace('version = "1.0.0"', f'version = "{version}"'))
        assert run_cli(env, "publish", str(pkg)).exit_code == 0

    yanked = run_cli(env, "yank", "alice/p@1.1.0", "--reason", "wrong weights")
    assert yanked.exit_code == 0, yanked.output
    assert yanked.stdout.strip() == "yanked alice/p@1.1.0: wrong weights"

    shown = run_cli(env, "info", "alice/p")
    assert "YANKED: wrong weights" in shown.stdout
    best = json.loads(run_cli(env, "info", "alice/p@^1", "--json").stdout)["version"]
    assert best["version"] == "1.0.0" and best["dependencies"] == {"alice/base": "^1.0"}
    pinned = run_cli(env, "info", "alice/p@1.1.0")
    assert pinned.exit_code == 0 and "YANKED: wrong weights" in pinned.stdout

    undone = run_cli(env, "yank", "alice/p@1.1.0", "--undo", "--reason", "they were fine")
    assert undone.exit_code == 0 and "un-yanked alice/p@1.1.0" in undone.stdout
    assert json.loads(run_cli(env, "info", "alice/p@^1", "--json").stdout)["version"]["version"] == "1.1.0"

    missing = run_cli(env, "yank", "alice/p", "--reason", "x")
    assert missing.exit_code == 1 and "say which version" in missing.stderr


def test_the_installed_command_end_to_end(hub, token, tmp_path):
    """The `cvflow` console script in child processes: init, validate, publish, search, info,
    yank, and a republish that is refused."""
    env = cli_env(tmp_path / "home", hub.url, token)
    pkg = tmp_path / "detector"
    steps = [
        ["init", str(pkg), "--name", "alice/detector", "--task", "detection"],
        ["validate", str(pkg)],
        ["publish", str(pkg)],
        ["search", "detector", "--json"],
        ["info", "alice/detector@^0.1", "--json"],
        ["yank", "alice/detector@0.1.0", "--reason", "superseded"],
    ]
    out = {}
    for args in steps:
        done = run_script(env, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        out[args[0]] = done.stdout
    assert out["publish"].splitlines()[1:] == [f"page: {hub.url}/alice/detector/v/0.1.0",
                                               f"api:  {hub.url}/api/v1/packages/alice/detector/versions/0.1.0"]
    assert json.loads(out["search"])["results"][0]["name"] == "alice/detector"
    assert json.loads(out["info"])["version"]["manifest"]["task"] == "detection"
    again = run_script(env, "publish", str(pkg))
    assert again.returncode == 1
    assert "already published" in again.stderr and "Traceback" not in again.stderr


def test_transfer_bars_stay_quiet_without_a_terminal(capsys):
    with transfer_bar(console=Console(file=io.StringIO())) as bar:
        task = bar.add("weights/x.bin", 10)
        bar.advance(task, 10)
        bar.log("resuming weights/x.bin")
    with transfer_bar(quiet=True) as bar:
        bar.log("not shown")
    assert capsys.readouterr() == ("", "resuming weights/x.bin\n")

    screen = io.StringIO()
    with transfer_bar(console=Console(file=screen, force_terminal=True, width=100)) as bar:
        task = bar.add("weights/x.bin", 2048)
        bar.advance(task, 2048)
    assert "weights/x.bin" in screen.getvalue() and "2.0/2.0 KiB" in screen.getvalue()


class _ChangesOneFile:
    """Progress that overwrites ``path`` (same size, other bytes) as its upload starts."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path, self.data, self.started = path, data, list[str]()

    def add(self, description: str, total: int | None) -> int:
        self.started.append(description)
        if self.path.as_posix().endswith(description):
            self.path.write_bytes(self.data)
        return len(self.started)

    def advance(self, task_id: int, n: int) -> None:
        pass

    def log(self, message: str) -> None:
        pass


class _Spy:
    """Counts calls to the live hub's own upload service (batches, sessions); calls go through."""

    def __init__(self, service: Any) -> None:
        self.service, self.calls = service, {"batches": 0, "sessions": 0}
        self.put_batch, self.create = service.put_batch, service.create

    def __enter__(self) -> dict[str, int]:
        def batch(*args: Any) -> Any:
            self.calls["batches"] += 1
            return self.put_batch(*args)

        def session(*args: Any) -> Any:
            self.calls["sessions"] += 1
            return self.create(*args)

        self.service.put_batch, self.service.create = batch, session
        return self.calls

    def __exit__(self, *exc: object) -> None:
        self.service.put_batch, self.service.create = self.put_batch, self.create


class _ChangesOnLog:
    """Progress that overwrites ``path`` when the first line is logged (after hashing, before uploads)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, description: str, total: int | None) -> int:
        return 0

    def advance(self, task_id: int, n: int) -> None:
        pass

    def log(self, message: str) -> None:
        self.path.write_bytes(b"changed after hashing")


def test_small_files_go_up_in_batches(hub: Any, token: str, tmp_path: Path) -> None:
    """A dataset's many small files take a few batch requests, not a session each; a file changed
    since it was hashed stops the publish, named, before its batch is sent."""
    from cvflow.errors import HubError
    from cvflow.publish import BATCH_COUNT, publish_dir

    images = {f"images/{i:04d}.png": os.urandom(200 + i % 50) for i in range(BATCH_COUNT + 20)}
    pkg = write_package(tmp_path / "p", "alice/p", files=images)
    with _Spy(hub.context.uploads) as calls, HubClient(hub.url, token) as client:
        with pytest.raises(HubError, match="images/0007.png changed since it was hashed"):
            publish_dir(client, pkg, state_dir=tmp_path / "state", progress=_ChangesOnLog(pkg / "images/0007.png"))
        assert calls == {"batches": 0, "sessions": 0}, "the first batch held the changed file: nothing was sent"
        (pkg / "images/0007.png").write_bytes(images["images/0007.png"])
        done = publish_dir(client, pkg, state_dir=tmp_path / "state")
    assert calls == {"batches": 2, "sessions": 0}, calls  # 1,022 files (with cvflow.toml and solver.py)
    assert done["version"] == "1.0.0" and len(done["uploaded"]) == len(images) + 2
    got = httpx.get(f"{hub.url}/api/v1/packages/alice/p/versions/1.0.0/files/images/0999.png")
    assert got.content == images["images/0999.png"]


def test_a_hub_without_batch_uploads_gets_upload_sessions(hub: Any, token: str, tmp_path: Path) -> None:
    """A hub from before batch uploads (here: this hub's app without that route, on the same
    database and store) answers 404; the client then opens a session per blob."""
    from cvflow.publish import publish_dir
    from hub.app import ApiRoutes, create_app
    from tests.conftest import ServerThread

    app = create_app(hub.context.settings, context=hub.context)
    api_routes = next(r for r in app.routes if isinstance(r, ApiRoutes))
    api_routes.router.routes = [r for r in api_routes.router.routes if getattr(r, "path", "") != "/api/v1/blobs"]
    files = {f"data/{i}.txt": f"line {i}\n".encode() for i in range(5)}
    pkg = write_package(tmp_path / "p", "alice/p", files=files)
    with ServerThread(app) as older, _Spy(hub.context.uploads) as calls:
        with HubClient(f"http://127.0.0.1:{older.port}", token) as client:
            assert client.request("POST", "/api/v1/blobs/check", json={"digests": []}).status_code == 200
            done = publish_dir(client, pkg, state_dir=tmp_path / "state")
    assert calls == {"batches": 0, "sessions": 7}, calls
    got = httpx.get(f"{hub.url}/api/v1/packages/alice/p/versions/1.0.0/files/data/3.txt")
    assert done["version"] == "1.0.0" and got.content == b"line 3\n"


def test_a_failed_upload_stops_the_others_and_is_the_error_reported(hub: Any, token: str, tmp_path: Path) -> None:
    from cvflow.errors import HubError
    from cvflow.publish import publish_dir

    # Both over 1 MiB: each takes an upload session (smaller blobs go up in batches).
    big, small = os.urandom(40 * MiB), os.urandom(2 * MiB)
    pkg = write_package(tmp_path / "p", "alice/p", files={"weights/big.dat": big, "weights/small.dat": small},
                        weights=("weights/big.dat", "weights/small.dat"))
    progress = _ChangesOneFile(pkg / "weights/small.dat", os.urandom(2 * MiB))
    with HubClient(hub.url, token) as client, pytest.raises(HubError) as failed:
        publish_dir(client, pkg, state_dir=tmp_path / "state", progress=progress)
    # Both uploads ran at once; the changed file's digest_mismatch is what the caller hears,
    # not the stop it caused in the other upload.
    assert {"weights/big.dat", "weights/small.dat"} <= set(progress.started)
    assert failed.value.code == "digest_mismatch"
    assert "weights/small.dat changed while it was uploaded" in str(failed.value)
    assert httpx.get(f"{hub.url}/api/v1/packages/alice/p").status_code == 404
    # The big file either got through or was stopped with its session kept for the next run.
    big_digest = hashlib.sha256(big).hexdigest()
    assert big_digest in blob_digests(hub) or (tmp_path / "state" / "uploads" / f"{big_digest}.json").is_file()

    # The next run sends what is missing (resuming the big file if it was stopped half-way) and publishes.
    with HubClient(hub.url, token) as client:
        done = publish_dir(client, pkg, state_dir=tmp_path / "state")
    assert done["version"] == "1.0.0" and upload_ids(hub) == set()
    got = httpx.get(f"{hub.url}/api/v1/packages/alice/p/versions/1.0.0/files/weights/big.dat")
    assert hashlib.sha256(got.content).hexdigest() == big_digest
