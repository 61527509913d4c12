"""Hub URLs as people type them: no scheme, or the API root instead of the hub's root."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvflow.config import hub_url_note, load_config, normalise_hub, read_saved
from cvflow.errors import ConfigError


@pytest.mark.parametrize(("typed", "hub"), [
    ("127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("localhost:8000", "http://localhost:8000"),
    ("localhost", "http://localhost"),
    ("[::1]:9000", "http://[::1]:9000"),
    ("10.1.2.3:8000/base", "http://10.1.2.3:8000/base"),
    ("192.168.0.7", "http://192.168.0.7"),
    ("169.254.1.1:80", "http://169.254.1.1"),
    ("hub.example.org", "https://hub.example.org"),
    ("Hub.Example.org:8443", "https://hub.example.org:8443"),
    ("intranet-hub:8000", "https://intranet-hub:8000"),
    ("8.8.8.8", "https://8.8.8.8"),
])
def test_a_hub_without_scheme_gets_http_when_local_or_private_and_https_otherwise(typed: str, hub: str) -> None:
    assert normalise_hub(typed) == hub
    assert hub_url_note(typed) is None


@pytest.mark.parametrize("typed", ["nonsense", "not a url", "hub.example.org:port", "ftp://hub.example.org"])
def test_what_is_not_a_host_is_still_refused(typed: str) -> None:
    with pytest.raises(ConfigError, match="must look like https://hub.example.org"):
        normalise_hub(typed)


@pytest.mark.parametrize(("typed", "hub"), [
    ("http://127.0.0.1:8000/api/v1", "http://127.0.0.1:8000"),
    ("https://hub.example.org/api/v1/", "https://hub.example.org"),
    ("hub.example.org/mirror/api/v1", "https://hub.example.org/mirror"),
])
def test_the_api_root_is_dropped_with_a_note(typed: str, hub: str) -> None:
    assert normalise_hub(typed) == hub
    note = hub_url_note(typed)
    assert note is not None and f"using the hub's own URL {hub}" in note and typed.strip() in note


def test_cvflow_hub_and_the_saved_login_are_mended_the_same_way(tmp_path: Path) -> None:
    env = {"CVFLOW_HOME": str(tmp_path), "CVFLOW_HUB": "127.0.0.1:8000/api/v1", "CVFLOW_TOKEN": "cvf_env"}
    cfg = load_config(environ=env)
    assert (cfg.hub, cfg.hub_source, cfg.token, cfg.token_source) == (
        "http://127.0.0.1:8000", "environment", "cvf_env", "environment")
    assert cfg.hub_note == "127.0.0.1:8000/api/v1 is the hub's API root; using the hub's own URL http://127.0.0.1:8000"
    (tmp_path / "config.toml").write_text('hub = "localhost:8000"\n[tokens]\n"localhost:8000/api/v1" = "cvf_saved"\n')
    saved = read_saved(tmp_path)
    assert (saved.hub, dict(saved.tokens)) == ("http://localhost:8000", {"http://localhost:8000": "cvf_saved"})
    cfg = load_config(environ={"CVFLOW_HOME": str(tmp_path)})
    assert (cfg.hub, cfg.hub_source, cfg.token, cfg.token_source) == (
        "http://localhost:8000", "saved", "cvf_saved", "saved")
    with pytest.raises(ConfigError, match=r"\(it came from --hub\)"):
        load_config(hub="nonsense", environ={"CVFLOW_HOME": str(tmp_path)})
