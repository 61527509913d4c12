"""The hub's publish endpoint refuses Windows device names and trailing dots/spaces in file paths.

Every device name, in any directory, with extensions and in any case; nothing is stored.
The rule itself is cvflow.paths's (tests/client/test_windows_names.py covers it in full).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from cvflow.api import HubClient
from cvflow.cache import Cache
from cvflow.paths import validate_file_list
from cvflow.pull import pull
from hub.services import packages as package_service
from tests.helpers import error_code, manifest, publish, upload

DEVICES = ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
           *(f"{port}{n}" for port in ("COM", "LPT") for n in range(1, 10))]


def _spellings(device: str, i: int) -> str:
    """One path per device, rotating case, extension and directory so each form is sent."""
    forms = [device, f"{device.lower()}.txt", f"{device.capitalize()}.tar.gz", f"{device} .py"]
    where = ["{}", "weights/{}", "{}/model.bin", "a/{}/b/c.txt"]
    return where[i % len(where)].format(forms[(i // len(where) + i) % len(forms)])


BAD = [_spellings(d, i) for i, d in enumerate(DEVICES)] + [
    "weights/model.", "weights/model ", "dir./x.bin", "dir /x.bin", "NUL", "aux/x.py", "Com1.txt", "lpt9.bin"]


def test_every_form_is_sent() -> None:
    assert any(p.endswith(".tar.gz") for p in BAD) and any("/" not in p for p in BAD)
    assert any(p.startswith("a/") for p in BAD) and any(" .py" in p for p in BAD)


@pytest.mark.parametrize("path", BAD)
def test_publish_refuses_windows_reserved_paths(hub, alice, path):
    text = manifest()
    entries = [{"path": "cvflow.toml", "size": len(text), "sha256": upload(alice, text.encode())},
               {"path": path, "size": 1, "sha256": upload(alice, b"x")}]
    r = alice.post("/api/v1/packages/alice/detector/versions", json={"manifest": text, "files": entries})
    assert r.status_code == 422, r.text
    assert error_code(r) == "invalid_path"
    assert path in r.text
    assert hub.client().get("/api/v1/packages/alice/detector").status_code == 404


def test_look_alikes_still_publish(hub, alice):
    text = manifest()
    files = {"cvflow.toml": text.encode(), "console.py": b"1", "weights/nul_mask.png": b"2", "com10.txt": b"3"}
    entries = [{"path": p, "size": len(b), "sha256": upload(alice, b)} for p, b in files.items()]
    r = alice.post("/api/v1/packages/alice/detector/versions", json={"manifest": text, "files": entries})
    assert r.status_code == 201, r.text


def test_a_version_from_before_the_rule_stays_pullable(hub, alice, monkeypatch, tmp_path: Path):
    # A hub from before the rule is simulated by publishing with the rule switched off
    # (the only way to make such a version now); reading it must still work on this platform.
    lenient = functools.partial(validate_file_list, portable=False)
    monkeypatch.setattr(package_service, "validate_file_list", lenient)
    assert publish(alice, files={"solver.py": b"x", "aux.py": b"old", "con/nul.txt": b"older"}).status_code == 201
    monkeypatch.undo()
    assert publish(alice, version="1.0.1", files={"aux.py": b"new"}).status_code == 422  # the rule is back

    cache = Cache(tmp_path / "cache")
    with HubClient(hub.url) as client:
        path = pull(client, cache, "alice/detector@1.0.0")
    assert (path / "aux.py").read_bytes() == b"old" and (path / "con" / "nul.txt").read_bytes() == b"older"
    assert [v.version for v in cache.ls()] == ["1.0.0"]
