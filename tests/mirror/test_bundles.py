"""Air-gap bundles: hub export/import, `cvflow bundle` and `cvflow install --from` with no hub at all;
a tampered bundle is refused and nothing of it is kept."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from cvflow.bundle import MANIFEST_NAME
from tests.client_e2e._install_helpers import fails, install_json, python_in, versions
from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.mirror._helpers import blob_rows, feed, publish_ok, same_release, stored_blobs, version_doc
from tests.mirror.conftest import hub_cli, stop_hub
from tests.mirror.test_edge import INFER, _publish_app


def _export(live, out, *args):  # type: ignore[no-untyped-def]
    result = hub_cli(live, "export", "--out", str(out), "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _import(live, bundle, *args, ok=True):  # type: ignore[no-untyped-def]
    result = hub_cli(live, "import", str(bundle), *args, *(["--json"] if ok else []))
    assert result.exit_code == (0 if ok else 1), result.output
    live.context.cache.clear()
    return json.loads(result.stdout) if ok else result.output


def _tamper(bundle: Path, digest: str) -> None:
    """Change one byte of blob ``digest`` inside the bundle, leaving everything else as written."""
    with tarfile.open(bundle) as tar:
        member = tar.getmember(f"blobs/{digest}")
    with bundle.open("r+b") as f:
        f.seek(member.offset_data)
        first = f.read(1)
        f.seek(member.offset_data)
        f.write(bytes([first[0] ^ 0xFF]))


def test_export_then_import_on_a_hub_with_no_path_to_the_first(hub, spawn_hub, tmp_path):
    alice = hub.user_client("alice")
    for v in ("1.0.0", "1.1.0", "2.0.0"):
        publish_ok(alice, "alice/det", v)
    publish_ok(alice, "alice/secret", "1.0.0", private=True)
    assert alice.post("/api/v1/packages/alice/det/versions/1.1.0/yank", json={"reason": "bad"}).status_code == 200
    out = tmp_path / "models.cvflow"
    exported = _export(hub, out, "--filter", "alice@^1", "--source", "hub.example")
    assert sorted(exported["versions"]) == ["alice/det@1.0.0", "alice/det@1.1.0"]

    target = spawn_hub()
    report = _import(target, out, "--sha256", exported["sha256"])
    assert sorted(report["versions"]) == ["alice/det@1.0.0", "alice/det@1.1.0"] and report["blobs"] == 5
    for v in ("1.0.0", "1.1.0"):
        assert same_release(version_doc(hub, "alice/det", v), version_doc(target, "alice/det", v))
    assert target.client().get("/api/v1/packages/alice/det").json()["origin"] == {
        "upstream": "hub.example", "via": "bundle",
        "synced_at": target.client().get("/api/v1/packages/alice/det").json()["origin"]["synced_at"]}
    assert [e["action"] for e in feed(target)] == ["publish", "publish", "yank"]
    assert _import(target, out)["present"] == report["versions"]  # again: nothing new, nothing changed

    wrong = _import(target, out, "--sha256", "0" * 64, ok=False)
    assert "[bundle_invalid]" in wrong and "not the bundle that was written" in wrong


def test_a_tampered_bundle_is_refused_by_a_hub_and_by_a_client(spawn_hub, tmp_path):
    source = spawn_hub()
    publish_ok(source.user_client("alice"), "alice/det", "1.0.0")
    out = tmp_path / "det.cvflow"
    _export(source, out)
    weights = next(f for f in version_doc(source, "alice/det", "1.0.0")["files"] if f["path"] == "weights.safetensors")
    _tamper(out, weights["sha256"])

    target = spawn_hub()
    error = _import(target, out, ok=False)
    assert "[bundle_invalid]" in error and "does not hash to its name" in error
    assert target.client().get("/api/v1/packages/alice/det").status_code == 404
    assert weights["sha256"] not in stored_blobs(target) | blob_rows(target)
    assert feed(target) == []

    home = tmp_path / "edge"
    message = fails(cli_env(home, None), "install", "--from", str(out), "--lock-file", str(tmp_path / "x.lock"))
    assert "does not hash to its name" in message
    assert not (home / "cache" / "blobs" / "sha256" / weights["sha256"]).exists()
    assert not (home / "cache" / "snapshots" / "alice" / "det").exists() and not (home / "venvs").exists()

    # A manifest edited to match other bytes is refused too: its blob list no longer fits the files.
    forged = tmp_path / "forged.cvflow"
    with tarfile.open(out) as tar, tarfile.open(forged, "w", format=tarfile.PAX_FORMAT) as new:
        for member in tar:
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == MANIFEST_NAME:
                doc = json.loads(data)
                doc["blobs"][weights["sha256"]] += 1
                data = json.dumps(doc).encode()
                member.size = len(data)
            import io

            new.addfile(member, io.BytesIO(data))
    assert "[bundle_invalid]" in _import(target, forged, ok=False)


def test_a_client_bundle_installs_on_a_machine_with_no_hub_at_all(spawn_hub, tmp_path):
    upstream = spawn_hub()
    _publish_app(upstream)
    bundle = tmp_path / "app.cvflow"
    made = run_cli(cli_env(tmp_path / "online", upstream.url), "bundle", "alice/app@^1", "-o", str(bundle), "--json")
    assert made.exit_code == 0, made.output
    summary = json.loads(made.stdout)
    assert summary["packages"] == {"alice/app": "1.0.0", "alice/base": "1.0.0"}
    stop_hub(upstream)  # from here on, no hub exists anywhere

    home = tmp_path / "edge"
    report = install_json(cli_env(home, None), "--from", str(bundle), "--sha256", summary["sha256"],
                          "--lock-file", str(tmp_path / "edge.lock"))
    assert versions(report) == {"alice/app": "1.0.0", "alice/base": "1.0.0"}
    app = next(p for p in report["packages"] if p["name"] == "alice/app")
    assert python_in(app["venv"], INFER) == "{'doubled': 42}"
    # The bundle filled the cache: later offline installs need nothing else.
    again = install_json(cli_env(home, None), "alice/app", "--offline", "--lock-file", str(tmp_path / "edge.lock"))
    assert again["built"] == []

    # The same file seeds a hub.
    seeded = spawn_hub()
    assert sorted(_import(seeded, bundle)["versions"]) == ["alice/app@1.0.0", "alice/base@1.0.0"]
