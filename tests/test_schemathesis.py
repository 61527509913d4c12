"""schemathesis over the hub's OpenAPI document: the contract holds under fuzzing.

For each backend, a real hub on a loopback socket is fuzzed by the ``st`` command line (a
subprocess, as CI runs it) with its default checks: no 5xx, every status and content type
documented, responses matching their schemas, schema-valid requests accepted, schema-invalid
ones refused, ``Allow`` on 405 listing the path's methods. Once anonymous, once with an admin
token. Bounded: a fixed number of examples per operation (``CVFLOW_SCHEMATHESIS_EXAMPLES``),
one worker, and a fixed seed so that CI is repeatable (``CVFLOW_SCHEMATHESIS_SEED`` to vary it).

No check is turned off. Nine operations accept 4xx answers to schema-valid requests, for
rules JSON Schema cannot state; each has its reason in ``CONFIG`` below.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hub.api import endpoints
from tests.helpers import LiveHub

ST = Path(sys.executable).parent / "st"
EXAMPLES = os.environ.get("CVFLOW_SCHEMATHESIS_EXAMPLES", "10")
SEED = os.environ.get("CVFLOW_SCHEMATHESIS_SEED", "20240610")
#: Each run stops here; the two runs of a backend stay under three minutes together.
RUN_TIMEOUT = 300

_ACCEPTED = '["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"'
CONFIG = f"""
# positive_data_acceptance: a request that the document calls valid must not be refused with
# 400 or 422. These operations also apply rules that are not a matter of a value's shape:

[[operations]]
include-operation-id = "publish"
# The manifest is TOML text: its rules (a [package] table, a SemVer version, solvers, weights)
# and the file list's agreement with it are checked on the TOML, which JSON Schema cannot see.
checks.positive_data_acceptance.expected-statuses = {_ACCEPTED}, "422"]

[[operations]]
include-operation-id = "register"
# A repository URL must resolve to a public address (no loopback, no private networks): that is
# decided by resolving the host name at request time, not by the URL's shape.
checks.positive_data_acceptance.expected-statuses = {_ACCEPTED}, "422"]

[[operations]]
include-operation-id = "add_items"
# Each image must be a blob the caller may reference (missing_blobs), a PNG or JPEG within the
# limits (invalid_image), and its name must not clash with the project's (invalid_files).
checks.positive_data_acceptance.expected-statuses = {_ACCEPTED}, "422"]

[[operations]]
include-operation-id = "create_project"
# A project's classes are unique ignoring case (invalid_project), a rule across the list's
# items that JSON Schema's uniqueItems, which compares them exactly, cannot state.
checks.positive_data_acceptance.expected-statuses = {_ACCEPTED}, "422"]

[[operations]]
include-operation-id = "add_items_from_dataset"
# The version must be a dataset of the project's task whose classes the project has
# (invalid_project), and its annotation files and images must hold what the layout says
# (invalid_labels, invalid_image): rules on stored data, not on the request's shape. The
# package name's rules across its two halves are cvflow.names's, as for snapshot.
checks.positive_data_acceptance.expected-statuses = {_ACCEPTED}, "422"]

[[operations]]
include-operation-id = "post_suggestions"
# Suggestions are checked against the project's classes and each item's size (invalid_labels),
# and no item may be named twice in one post: none of it is a value's shape.
checks.positive_data_acceptance.expected-statuses = {_ACCEPTED}, "422"]

[[operations]]
include-operation-id = "snapshot"
# A package name's rules across its two halves (their lengths, reserved namespaces) are
# checked by cvflow.names; JSON Schema's pattern cannot state them without look-ahead.
checks.positive_data_acceptance.expected-statuses = {_ACCEPTED}, "422"]

[[operations]]
include-operation-id = "put_blobs"
# The body is binary records (a line "<sha256> <size>", then the bytes) whose blobs must hash to
# their lines: a framing and a digest that no schema of an octet stream can state (400), and
# limits on each blob and on their number (413).
checks.positive_data_acceptance.expected-statuses = {_ACCEPTED}, "400", "413"]

[[operations]]
include-operation-id = "create_upload"
# The largest blob is a deployment setting (CVFLOW_HUB_MAX_BLOB_SIZE), answered with 413
# upload_too_large; the document is the same for every deployment.
checks.positive_data_acceptance.expected-statuses = {_ACCEPTED}, "413"]
"""


def _fuzz(hub: LiveHub, workdir: Path, token: str | None) -> subprocess.CompletedProcess[str]:
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    cmd = [str(ST), "--config-file", str(config), "--no-color", "run", f"{hub.url}/api/v1/openapi.json",
           "--workers", "1", "--max-examples", EXAMPLES, "--seed", SEED, "--request-timeout", "30"]
    if token:
        cmd += ["--header", f"Authorization: Bearer {token}"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, check=False)


@pytest.mark.parametrize("who", ["anonymous", "admin"])
def test_schemathesis_finds_no_failure(hub: LiveHub, tmp_path: Path, who: str) -> None:
    token = hub.create_user("root", admin=True, scopes="admin") if who == "admin" else None
    result = _fuzz(hub, tmp_path, token)
    out = result.stdout + result.stderr
    assert result.returncode == 0, f"schemathesis found failures ({hub.backend}, {who}):\n{out[-15000:]}"
    tested = re.search(r"Tested:\s+(\d+)", out)
    assert tested and int(tested.group(1)) == len(endpoints()), out[-3000:]  # every operation was fuzzed
