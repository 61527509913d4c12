"""Windows device names and trailing dots/spaces are refused in package paths (cvflow.paths).

The hub imports the same rule (hub/services/packages.py calls ``validate_file_list``), so
these names are refused by ``cvflow validate``, ``cvflow publish`` and the hub alike;
tests/test_windows_names.py holds the hub's publish endpoint to it over a real socket.
"""

from __future__ import annotations

import pytest

from cvflow.errors import InvalidPathError
from cvflow.paths import WINDOWS_RESERVED_NAMES, validate_file_list, validate_path, windows_reserved

DIGEST = "ab" * 32
DEVICES = ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
           *(f"{port}{n}" for port in ("COM", "LPT") for n in range(1, 10))]


def spellings(device: str) -> list[str]:
    """The ways a segment can name ``device``: any case, any extension, trailing spaces."""
    return [device, device.lower(), device.capitalize(), f"{device}.txt", f"{device.lower()}.tar.gz",
            f"{device} .py", f"{device}:stream"]


def placements(segment: str) -> list[str]:
    return [segment, f"{segment}/model.bin", f"weights/{segment}", f"a/{segment}/b/c.txt"]


def test_the_reserved_set_is_every_device_windows_has() -> None:
    assert set(DEVICES) <= WINDOWS_RESERVED_NAMES
    assert {"COM\u00b9", "LPT\u00b3"} <= WINDOWS_RESERVED_NAMES


@pytest.mark.parametrize("device", DEVICES)
def test_every_device_name_is_refused_in_every_spelling_and_directory(device: str) -> None:
    for segment in spellings(device):
        for path in placements(segment):
            assert windows_reserved(segment), segment
            with pytest.raises(InvalidPathError, match="device name Windows reserves"):
                validate_path(path)
            with pytest.raises(InvalidPathError) as info:
                validate_file_list([{"path": "ok.txt", "size": 1, "sha256": DIGEST},
                                    {"path": path, "size": 1, "sha256": DIGEST}])
            assert [(p.code, p.field) for p in info.value.problems] == [("invalid_path", "files[1].path")]


@pytest.mark.parametrize("segment", ["model.", "model ", "weights..", "dir. ", "a. .", "x  "])
def test_segments_ending_in_a_dot_or_space_are_refused_anywhere(segment: str) -> None:
    for path in placements(segment):
        with pytest.raises(InvalidPathError, match="ending in a"):
            validate_path(path)


@pytest.mark.parametrize(
    "path",
    ["console.py", "nullable/x.txt", "auxiliary.bin", "com10.txt", "lpt0", "COM", "prn_utils.py",
     "my-con/x", "weights/nul_mask.png", ".nul", "a.con", "CON1.txt", " con"],
)
def test_names_that_only_look_like_devices_are_allowed(path: str) -> None:
    assert validate_path(path) == path


@pytest.mark.parametrize("rel", ["aux.py", "weights/NUL.bin", "Com1/x.txt", "notes./a.txt", "data /b.txt"])
def test_cvflow_validate_and_publish_refuse_such_a_package_before_any_upload(tmp_path, rel: str) -> None:
    from click.testing import CliRunner

    from cvflow.cli import main
    from tests.client_e2e._recording_hub import RecordingHub, write_package

    package = write_package(tmp_path / "pkg", "alice/detector")
    (package / rel).parent.mkdir(parents=True, exist_ok=True)
    (package / rel).write_bytes(b"x")
    env = {"CVFLOW_HOME": str(tmp_path / "home"), "CVFLOW_TOKEN": "cvf_" + "t" * 40}
    checked = CliRunner().invoke(main, ["validate", str(package)], env=env, catch_exceptions=False)
    assert checked.exit_code == 1 and rel in checked.stderr, checked.output
    with RecordingHub() as hub:
        sent = CliRunner().invoke(main, ["--hub", hub.url, "publish", "-q", str(package)], env=env,
                                  catch_exceptions=False)
    assert sent.exit_code == 1 and rel in sent.stderr, sent.output
    assert hub.seen == [], "refused before anything reached the hub"
