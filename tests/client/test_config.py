"""Where the client's hub, token, home and cache settings come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvflow.config import DEFAULT_HUB, load_config, save_login


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
