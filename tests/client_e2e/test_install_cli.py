"""`cvflow install`, `list` and `uninstall` against a live hub: real resolution, real cache, real venvs."""

from __future__ import annotations

import json
import os
import tomllib

import pytest

from cvflow.lockfile import LockfileError, read_lock
from tests.client_e2e._install_helpers import (
    build_wheel,
    fails,
    install_json,
    publish_ok,
    python_in,
    versions,
    yank,
)
from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.conftest import free_port
from tests.helpers import sha256

BASELIB = "VERSION = {version!r}\n"
APP_SOLVER = b"import baselib\n\nclass Detector:\n    base = baselib.VERSION\n"


def publish_base(alice, version):  # type: ignore[no-untyped-def]
    files = {"baselib.py": BASELIB.format(version=version).encode(), "solver.py": b"class Detector: pass\n"}
    publish_ok(alice, "alice/base", version, files=files)


def publish_app(alice, version="1.0.0", base="^1.0", extra=""):  # type: ignore[no-untyped-def]
    publish_ok(alice, "alice/app", version, files={"solver.py": APP_SOLVER}, deps={"alice/base": base}, extra=extra)


@pytest.fixture
def env(hub, tmp_path):  # type: ignore[no-untyped-def]
    return cli_env(tmp_path / "home", hub.url)


def test_install_resolves_locks_and_makes_each_package_importable_in_its_venv(hub, alice, env, tmp_path):
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        publish_base(alice, v)
    yank(alice, "alice/base", "1.2.0")
    publish_app(alice)
    lock = tmp_path / "cvflow.lock"

    report = install_json(env, "alice/app", "--lock-file", str(lock))
    assert versions(report) == {"alice/app": "1.0.0", "alice/base": "1.1.0"}  # 1.2.0 is yanked
    assert sorted(report["built"]) == ["alice/app@1.0.0", "alice/base@1.1.0"]
    app = next(p for p in report["packages"] if p["name"] == "alice/app")
    assert app["venv"] == str(tmp_path / "home" / "venvs" / "alice" / "app" / "1.0.0")
    assert app["dependencies"] == {"alice/base": "1.1.0"}
    # The package's own modules come first; its dependencies' are importable too.
    assert python_in(app["venv"], "import solver; print(solver.Detector.base)") == "1.1.0"
    base = next(p for p in report["packages"] if p["name"] == "alice/base")
    assert python_in(base["venv"], "import solver, baselib; print(hasattr(solver.Detector, 'base'))") == "False"

    data = tomllib.loads(lock.read_text())
    assert data["version"] == 1 and data["hub"] == hub.url
    assert [(p["name"], p["version"], p.get("requested")) for p in data["package"]] == [
        ("alice/app", "1.0.0", "*"), ("alice/base", "1.1.0", None)]
    assert data["package"][0]["dependencies"] == {"alice/base": "^1.0"}
    files = {f["path"]: f for f in data["package"][1]["files"]}
    assert files["baselib.py"]["sha256"] == sha256(b"VERSION = '1.1.0'\n")
    assert [f["path"] for f in data["package"][1]["files"]] == ["baselib.py", "cvflow.toml", "solver.py"]

    # Installing again changes nothing: same lock bytes, no venv rebuilt.
    before = lock.read_bytes()
    assert install_json(env, "alice/app", "--lock-file", str(lock))["built"] == []
    assert lock.read_bytes() == before

    # A newer base appears: --locked still installs exactly what the lock says.
    publish_base(alice, "1.3.0")
    report = install_json(env, "--locked", "--lock-file", str(lock))
    assert versions(report) == {"alice/app": "1.0.0", "alice/base": "1.1.0"} and report["built"] == []
    assert lock.read_bytes() == before
    assert not (tmp_path / "home" / "venvs" / "alice" / "base" / "1.3.0").exists()

    # Without --locked the install moves to base 1.3.0; app's venv is rebuilt against it.
    report = install_json(env, "alice/app@^1", "--lock-file", str(lock))
    assert versions(report) == {"alice/app": "1.0.0", "alice/base": "1.3.0"}
    assert sorted(report["built"]) == ["alice/app@1.0.0", "alice/base@1.3.0"]
    assert python_in(app["venv"], "import solver; print(solver.Detector.base)") == "1.3.0"
    assert read_lock(lock).roots == {"alice/app": "^1"}

    listed = json.loads(run_cli(env, "list", "--json").stdout)
    assert [(r["name"], r["version"]) for r in listed] == [
        ("alice/app", "1.0.0"), ("alice/base", "1.1.0"), ("alice/base", "1.3.0")]
    state = json.loads((tmp_path / "home" / "state" / "installed.json").read_text())
    assert len(state["packages"]) == 3


def test_locked_install_refuses_what_differs_from_the_lock(hub, alice, env, tmp_path):
    publish_ok(alice, "alice/tool", "1.0.0", files={"solver.py": b"class Detector: pass\n"})
    lock = tmp_path / "cvflow.lock"
    install_json(env, "alice/tool@1.0.0", "--lock-file", str(lock))
    good = lock.read_text()

    assert fails(env, "install", "alice/other", "--locked", "--lock-file", str(lock)) == (
        f"{lock} was written for alice/tool@1.0.0, not alice/other; run without --locked to update it")

    lock.write_text(good.replace(sha256(b"class Detector: pass\n"), "0" * 64))
    assert fails(env, "install", "--locked", "--lock-file", str(lock)) == (
        "alice/tool@1.0.0: its files differ from those in the lock (was the lock written against another hub?)")

    lock.write_text(good.replace('"alice/tool"', '"alice/tool"\ndependencies = { "alice/gone" = "^1" }', 1))
    assert fails(env, "install", "--locked", "--lock-file", str(lock)) == (
        f"{lock} is inconsistent: alice/tool@1.0.0 needs alice/gone ^1, the lock has no alice/gone;"
        " run without --locked to update it")

    lock.write_text(good.replace("version = 1", "version = 7", 1))
    message = fails(env, "install", "--locked", "--lock-file", str(lock))
    assert message.startswith(f"{lock} has format version 7; this cvflow reads lock format 1 only")
    with pytest.raises(LockfileError, match="no lock file at"):
        read_lock(tmp_path / "missing.lock")

    # A cached file changed so that size and modification time stay the same: the cache's quick check
    # cannot see it, the lock's digests do.
    lock.write_text(good)
    cached = tmp_path / "home" / "cache" / "snapshots" / "alice" / "tool" / "1.0.0" / "solver.py"
    original = cached.read_bytes()
    tamper(cached, original.upper(), keep_mtime=True)
    message = fails(env, "install", "--locked", "--lock-file", str(lock))
    assert message.startswith("alice/tool@1.0.0: solver.py has sha256 ") and "the lock says" in message
    # A plain change is noticed by the cache: offline the install stops...
    tamper(cached, b"import os; os.system('rm -rf ~')\n")
    assert fails(env, "install", "--locked", "--offline", "--lock-file", str(lock)) == (
        "offline: the cached copy of alice/tool@1.0.0 is damaged (solver.py); pull it again while online")
    # ...and online the file is downloaded again before anything is installed.
    install_json(env, "--locked", "--lock-file", str(lock))
    assert cached.read_bytes() == original


def tamper(path, data, *, keep_mtime=False):  # type: ignore[no-untyped-def]
    st = path.stat()
    os.chmod(path, 0o644)
    path.write_bytes(data)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_unsatisfiable_conflicting_and_missing_requirements_exit_1_with_readable_messages(hub, alice, env, tmp_path):
    publish_base(alice, "1.0.0")
    publish_base(alice, "2.0.0")
    publish_ok(alice, "alice/tool", "2.0.0", deps={"alice/base": "^2.0"})
    publish_ok(alice, "alice/app", "1.0.0", deps={"alice/base": "^1.0", "alice/tool": "^2.0"})
    publish_ok(alice, "alice/orphan", "1.0.0", deps={"alice/ghost": "^1"})
    lock = tmp_path / "cvflow.lock"

    assert fails(env, "install", "alice/base@^3", "--lock-file", str(lock)) == (
        "alice/base: you asked for ^3 — no version matches (available: 2.0.0, 1.0.0)")
    assert fails(env, "install", "alice/app", "--lock-file", str(lock)) == (
        "alice/base: alice/app@1.0.0 needs ^1.0, alice/tool@2.0.0 needs ^2.0 — no version satisfies both")
    assert fails(env, "install", "alice/orphan", "--lock-file", str(lock)) == (
        "alice/ghost: no such package on the hub (or it is private), required by alice/orphan@1.0.0")
    assert "must have the form 'namespace/name'" in fails(env, "install", "base", "--lock-file", str(lock))
    assert not lock.exists()
    assert not (tmp_path / "home" / "venvs").exists()


def test_offline_install_works_from_the_cache_alone_and_fails_clearly_without_it(hub, alice, env, tmp_path):
    publish_base(alice, "1.0.0")
    publish_app(alice)
    lock = tmp_path / "cvflow.lock"
    install_json(env, "alice/app", "--lock-file", str(lock))
    # Pruning the cache keeps what installed venvs use (their .pth files point into it).
    assert run_cli(env, "cache", "prune", "--all").exit_code == 0
    assert (tmp_path / "home" / "cache" / "snapshots" / "alice" / "base" / "1.0.0" / "baselib.py").exists()
    assert run_cli(env, "uninstall", "alice/app").exit_code == 0
    result = run_cli(env, "uninstall", "alice/base@1.0.0")
    assert result.exit_code == 0 and "uninstalled alice/base@1.0.0" in result.stdout
    assert not (tmp_path / "home" / "venvs" / "alice" / "app").exists()
    assert "nothing installed" in run_cli(env, "list").stdout
    assert fails(env, "uninstall", "alice/app") == "alice/app is not installed"

    dead = cli_env(tmp_path / "home", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert "cannot reach the hub" in fails(dead, "install", "alice/app", "--lock-file", str(lock))
    report = install_json(dead, "alice/app", "--offline", "--lock-file", str(lock))
    assert versions(report) == {"alice/app": "1.0.0", "alice/base": "1.0.0"}
    assert python_in(report["packages"][0]["venv"], "import solver; print(solver.Detector.base)") == "1.0.0"
    assert install_json(dead, "--locked", "--offline", "--lock-file", str(lock))["built"] == []

    assert fails(dead, "install", "alice/nothing", "--offline", "--lock-file", str(lock)) == (
        "offline: alice/nothing: no such package in the cache; pull what is missing while online")
    listed = run_cli(env, "list")
    assert "alice/app@1.0.0" in listed.stdout and "(uses alice/base@1.0.0)" in listed.stdout


def test_offline_python_requirements_come_from_local_wheels_or_fail_keeping_the_previous_install(hub, alice, env, tmp_path):
    from cvflow.api import HubClient
    from cvflow.cache import Cache
    from cvflow.pull import pull_version

    publish_base(alice, "1.0.0")
    publish_app(alice, "1.0.0")
    lock = tmp_path / "cvflow.lock"
    install_json(env, "alice/app", "--lock-file", str(lock))
    publish_app(alice, "1.1.0", extra='requirements = ["definitely-not-a-package-xyz==1.0"]')
    with HubClient(hub.url) as client:  # cached, so an offline install will pick it
        pull_version(client, Cache(tmp_path / "home" / "cache"), "alice/app", "1.1.0")

    message = fails(env, "install", "alice/app", "--offline", "--lock-file", str(lock))
    assert message.startswith("alice/app@1.1.0: installing definitely-not-a-package-xyz==1.0 failed")
    assert "Offline, Python requirements come only from a local wheel folder" in message

    listed = json.loads(run_cli(env, "list", "--json").stdout)
    assert [(r["name"], r["version"]) for r in listed] == [("alice/app", "1.0.0"), ("alice/base", "1.0.0")]
    assert sorted(os.listdir(tmp_path / "home" / "venvs" / "alice" / "app")) == ["1.0.0"]  # no half-built venv
    assert python_in(listed[0]["venv"], "import solver; print(solver.Detector.base)") == "1.0.0"

    # With the requirement in a local wheel folder, the same offline install succeeds, next to 1.0.0.
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "definitely-not-a-package-xyz", "1.0", {"xyzmod/__init__.py": b"ANSWER = 42\n"})
    offline_env = {**env, "PIP_FIND_LINKS": str(wheels), "UV_FIND_LINKS": str(wheels)}
    report = install_json(offline_env, "alice/app", "--offline", "--lock-file", str(lock))
    assert report["built"] == ["alice/app@1.1.0"]
    app = report["packages"][0]
    assert app["requirements"] == ["definitely-not-a-package-xyz==1.0"]
    assert python_in(app["venv"], "import xyzmod, solver; print(xyzmod.ANSWER, solver.Detector.base)") == "42 1.0.0"
    listed = json.loads(run_cli(env, "list", "--json").stdout)
    assert [(r["name"], r["version"]) for r in listed] == [
        ("alice/app", "1.0.0"), ("alice/app", "1.1.0"), ("alice/base", "1.0.0")]


def test_lock_files_are_deterministic_and_round_trip(tmp_path):
    from cvflow.lockfile import LockedPackage, make_lock, write_lock
    from cvflow.paths import FileEntry
    from cvflow.versions import Version

    files = (FileEntry("b.py", 2, "b" * 64), FileEntry("a.py", 1, "a" * 64))
    app = LockedPackage("alice/app", Version.parse("1.0.0"), files, {"alice/z": "^1", "alice/base": "~1.2"}, "^1")
    base = LockedPackage("alice/base", Version.parse("1.2.3-rc.1"))
    one, two = tmp_path / "one.lock", tmp_path / "two.lock"
    write_lock(one, make_lock("http://hub/", [app, base]))
    write_lock(two, make_lock("http://hub", [base, app]))
    assert one.read_bytes() == two.read_bytes()
    lock = read_lock(one)
    assert lock.hub == "http://hub" and lock.roots == {"alice/app": "^1"}
    assert [p.name for p in lock.packages] == ["alice/app", "alice/base"]
    assert lock.get("alice/app").files == tuple(sorted(files, key=lambda f: f.path))
    assert lock.get("alice/base").version == Version.parse("1.2.3-rc.1")

    one.write_text(one.read_text().replace('sha256 = "' + "a" * 64, 'sha256 = "xyz', 1))
    with pytest.raises(LockfileError, match=r"is malformed: package\[0\]: alice/app: each file needs"):
        read_lock(one)
    one.write_text("version = [")
    with pytest.raises(LockfileError, match="is not valid TOML"):
        read_lock(one)
