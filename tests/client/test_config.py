"""Where the client's hub, token, home and cache settings come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvflow.config import DEFAULT_HUB, forget_login, load_config, normalise_hub, read_saved, save_login
from cvflow.errors import ConfigError


def test_options_beat_environment_beat_saved_login(tmp_path: Path) -> None:
    save_login(tmp_path, "http://saved.example:1/", "cvf_saved")
    env = {"CVFLOW_HOME": str(tmp_path)}
    assert load_config(environ=env).hub == "http://saved.example:1"
    assert load_config(environ=env).token == "cvf_saved"
    env |= {"CVFLOW_HUB": "http://env.example:2", "CVFLOW_TOKEN": "cvf_env"}
    assert (load_config(environ=env).hub, load_config(environ=env).token) == ("http://env.example:2", "cvf_env")
    cfg = load_config(hub="http://opt.example:3", token="cvf_opt", environ=env)
    assert (cfg.hub, cfg.token) == ("http://opt.example:3", "cvf_opt")
    assert (tmp_path / "config.toml").stat().st_mode & 0o077 == 0


def test_defaults_without_anything(tmp_path: Path) -> None:
    cfg = load_config(environ={"XDG_DATA_HOME": str(tmp_path)})
    assert cfg.home == tmp_path / "cvflow"
    assert cfg.hub == DEFAULT_HUB and cfg.token is None
    assert cfg.cache().fsync is True


@pytest.mark.parametrize(("value", "fsync"), [("0", False), ("off", False), ("false", False), ("1", True), ("yes", True)])
def test_cache_fsync_can_be_switched_off(tmp_path: Path, value: str, fsync: bool) -> None:
    cfg = load_config(environ={"CVFLOW_HOME": str(tmp_path), "CVFLOW_CACHE_FSYNC": value})
    cache = cfg.cache()
    assert cache.fsync is fsync
    assert cache.root == tmp_path / "cache"


@pytest.mark.parametrize("url", ["https://hub.example.org", "HTTPS://Hub.Example.ORG/", "https://hub.example.org:443",
                                 " https://hub.example.org// "])
def test_hub_urls_are_normalised_to_one_key(url: str) -> None:
    assert normalise_hub(url) == "https://hub.example.org"


@pytest.mark.parametrize(("url", "key"), [
    ("http://127.0.0.1:80/", "http://127.0.0.1"), ("http://[::1]:8000", "http://[::1]:8000"),
    ("https://h.example/base/", "https://h.example/base"), ("http://h.example:443", "http://h.example:443"),
    ("https://h.example:80", "https://h.example:80")])
def test_port_and_path_stay_part_of_the_key(url: str, key: str) -> None:
    assert normalise_hub(url) == key


@pytest.mark.parametrize("url", ["", "nonsense", "ftp://h.example", "https://", "http://h:99999",
                                 "https://u:p@h.example", "https://h.example/?x=1", "https://h.example/#f"])
def test_urls_that_are_not_hubs_are_refused(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        normalise_hub(url)
    assert info.value.code == "invalid_config" and "p@" not in info.value.message


def test_a_saved_token_belongs_to_its_hub_only(tmp_path: Path) -> None:
    save_login(tmp_path, "https://a.example/", "cvf_a")
    save_login(tmp_path, "https://b.example", "cvf_b")
    env = {"CVFLOW_HOME": str(tmp_path)}
    assert (load_config(environ=env).hub, load_config(environ=env).token) == ("https://b.example", "cvf_b")
    assert load_config(hub="HTTPS://A.example:443/", environ=env).token == "cvf_a"
    assert load_config(environ=env | {"CVFLOW_HUB": "https://a.example"}).token == "cvf_a"
    for elsewhere in ("https://c.example", "http://a.example", "https://a.example:8443", "https://a.example/x"):
        cfg = load_config(hub=elsewhere, environ=env)
        assert (cfg.token, cfg.token_source) == (None, None), elsewhere
    assert forget_login(tmp_path, "https://a.example") is True
    assert forget_login(tmp_path, "https://a.example") is False
    assert read_saved(tmp_path).tokens == {"https://b.example": "cvf_b"}


def test_cvflow_token_goes_with_cvflow_hub_and_otherwise_to_the_hub_in_use(tmp_path: Path) -> None:
    save_login(tmp_path, "https://b.example", "cvf_saved_b")
    env = {"CVFLOW_HOME": str(tmp_path), "CVFLOW_HUB": "https://a.example", "CVFLOW_TOKEN": "cvf_env"}
    assert (load_config(environ=env).token, load_config(environ=env).token_source) == ("cvf_env", "environment")
    assert load_config(hub="https://a.example/", environ=env).token == "cvf_env"
    assert load_config(hub="https://b.example", environ=env).token == "cvf_saved_b"  # B's own, not CVFLOW_TOKEN
    assert load_config(hub="https://c.example", environ=env).token is None
    alone = {"CVFLOW_HOME": str(tmp_path), "CVFLOW_TOKEN": "cvf_env"}
    assert load_config(hub="https://c.example", environ=alone).token == "cvf_env"
    assert load_config(hub="https://c.example", token="cvf_opt", environ=env).token_source == "option"


@pytest.mark.parametrize(("text", "tokens", "hub"), [
    ('hub = "https://a.example/"\ntoken = "cvf_old"\n', {"https://a.example": "cvf_old"}, "https://a.example"),
    ('token = "cvf_old"\n', {DEFAULT_HUB: "cvf_old"}, None),
    ('hub = "not a url"\ntoken = "cvf_old"\n', {}, None),
    ('hub = "https://a.example"\ntoken = "cvf_old"\n[tokens]\n"https://a.example" = "cvf_new"\n',
     {"https://a.example": "cvf_new"}, "https://a.example"),
    ('[tokens]\n"https://A.example:443/" = "cvf_x"\n"nonsense" = "cvf_y"\n"https://b.example" = 3\n',
     {"https://a.example": "cvf_x"}, None),
    ("this is [not toml", {}, None),
])
def test_older_and_odd_config_files_are_read_safely(tmp_path: Path, text: str, tokens: dict[str, str],
                                                     hub: str | None) -> None:
    (tmp_path / "config.toml").write_text(text)
    saved = read_saved(tmp_path)
    assert (dict(saved.tokens), saved.hub) == (tokens, hub)


def test_the_next_write_moves_an_older_token_under_its_hub(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('hub = "https://a.example"\ntoken = "cvf_old"\n')
    save_login(tmp_path, "https://b.example", "cvf_b")
    text = (tmp_path / "config.toml").read_text()
    assert "\ntoken" not in text and not text.startswith("token")
    assert dict(read_saved(tmp_path).tokens) == {"https://a.example": "cvf_old", "https://b.example": "cvf_b"}
