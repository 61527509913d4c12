"""demo/face-utility (OpenCV's Haar cascade) finds the astronaut's face; demo/face-privacy, which
depends on it by a range, is installed with it by `cvflow run` and hides that face."""

from __future__ import annotations

import base64
import json

import httpx

from tests.client_e2e._publish_helpers import run_cli
from tests.runner._images import EXAMPLES, png_size

ASTRONAUT = (EXAMPLES / "face-utility" / "samples" / "astronaut.jpg").read_bytes()
FACE = (176, 65, 96, 96)  # where her face is in scikit-image's astronaut (x, y, width, height)


def overlap(box: dict[str, int], other: tuple[int, int, int, int]) -> float:
    """Intersection over union of two boxes."""
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    ox, oy, ow, oh = other
    iw = max(0, min(x + w, ox + ow) - max(x, ox))
    ih = max(0, min(y + h, oy + oh) - max(y, oy))
    inter = iw * ih
    return inter / (w * h + ow * oh - inter)


def test_a_package_that_depends_on_another_runs_and_both_find_the_face(env):
    # Nothing installed yet: `run` installs face-privacy and, through its range, face-utility.
    result = run_cli(env, "run", "demo/face-privacy", "--json")
    assert result.exit_code == 0, result.output
    privacy = json.loads(result.stdout)
    installed = {p["name"]: p for p in json.loads(run_cli(env, "list", "--json").stdout)}
    assert installed["demo/face-privacy"]["dependencies"] == {"demo/face-utility": "1.0.0"}
    assert "demo/face-utility" in installed

    result = run_cli(env, "run", "demo/face-utility:detect", "--json")
    assert result.exit_code == 0, result.output
    utility = json.loads(result.stdout)
    assert utility["solvers"] == ["detect"]
    try:
        detect = f"{utility['url']}/solvers/detect/infer"
        found = httpx.post(detect, files={"image": ("astronaut.jpg", ASTRONAUT, "image/jpeg")}, timeout=60).json()
        assert (found["width"], found["height"]) == (512, 512)
        assert len(found["faces"]) == 1, found
        assert overlap(found["faces"][0]["box"], FACE) > 0.7 and found["faces"][0]["score"] > 0
        alt = httpx.post(detect, files={"image": ("a.jpg", ASTRONAUT)}, data={"cascade": "alt2"}, timeout=60).json()
        assert overlap(alt["faces"][0]["box"], FACE) > 0.5
        bad = httpx.post(detect, files={"image": ("a.jpg", ASTRONAUT)}, data={"scale_factor": "1.0"}, timeout=60)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_field"

        anonymize = f"{privacy['url']}/solvers/anonymize/infer"
        hidden = httpx.post(anonymize, files={"image": ("astronaut.jpg", ASTRONAUT)}, timeout=60).json()
        assert len(hidden["faces"]) == 1 and overlap(hidden["faces"][0]["box"], FACE) > 0.7
        prefix = "data:image/png;base64,"
        assert hidden["image"].startswith(prefix)
        picture = base64.b64decode(hidden["image"][len(prefix):])
        assert png_size(picture) == (512, 512)
        # The detector no longer finds a face in the pixelated picture.
        again = httpx.post(detect, files={"image": ("hidden.png", picture)}, timeout=60).json()
        assert again["faces"] == [], again

        blurred = httpx.post(anonymize, files={"image": ("a.jpg", ASTRONAUT)},
                             data={"method": "blur", "format": "jpeg"}, timeout=60).json()
        assert blurred["image"].startswith("data:image/jpeg;base64,")
        wrong = httpx.post(anonymize, files={"image": ("a.jpg", ASTRONAUT)}, data={"method": "smudge"}, timeout=60)
        assert wrong.status_code == 422
        assert "must be one of 'pixelate', 'blur'" in wrong.json()["error"]["message"]
    finally:
        result = run_cli(env, "stop", "face-privacy", "face-utility")
    assert result.exit_code == 0, result.output
