"""Which config file a process uses, and what its relative paths mean (gateway/configpath.py)."""

from pathlib import Path

from gateway.config import load_config
from gateway.configpath import base_directory, find_config, packaged_sample

SAMPLE = packaged_sample().read_text()


def test_order_config_option_then_environment_then_etc_then_local_then_sample(tmp_path):
    """Each place is used only when the ones before it are absent; --config and the variable are used even if missing."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    system = tmp_path / "etc" / "exgateway.toml"
    env = {"EXGATEWAY_CONFIG": "/srv/gw.toml"}
    assert find_config("my.toml", env, cwd, system).path == cwd / "my.toml"
    assert find_config("my.toml", env, cwd, system).source == "--config"
    assert find_config(None, env, cwd, system).path == Path("/srv/gw.toml")
    assert find_config(None, {}, cwd, system).packaged
    (cwd / "exgateway.toml").write_text(SAMPLE)
    assert find_config(None, {}, cwd, system).path == cwd / "exgateway.toml"
    system.parent.mkdir()
    system.write_text(SAMPLE)
    assert find_config(None, {}, cwd, system).path == system
    assert find_config(None, {"EXGATEWAY_CONFIG": ""}, cwd, system).path == system


def test_relative_paths_are_under_the_config_files_directory(tmp_path, monkeypatch):
    """var_dir and every directory under it come out the same whichever directory the process starts in."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "gw.toml").write_text(SAMPLE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    c = load_config(conf / "gw.toml")
    assert c.var_dir == conf / "var"
    assert c.queue.directory == conf / "var" / "queue"
    assert c.admin_socket == conf / "var" / "run" / "admin.sock"
    assert c.auth.users_file == conf / "var" / "users.toml"
    monkeypatch.chdir(conf)
    assert load_config("gw.toml").var_dir == conf / "var"


def test_absolute_var_dir_is_kept(tmp_path):
    """An absolute var_dir (the systemd set-up's /var/lib/exgateway) is used as written."""
    (tmp_path / "gw.toml").write_text(SAMPLE.replace('var_dir = "var"', 'var_dir = "/var/lib/exgateway"'))
    assert load_config(tmp_path / "gw.toml").var_dir == Path("/var/lib/exgateway")


def test_the_packaged_sample_is_relative_to_the_current_directory(tmp_path, monkeypatch):
    """The sample's own directory is inside the package: no place for a queue."""
    monkeypatch.chdir(tmp_path)
    assert base_directory(packaged_sample()) == tmp_path
    assert load_config().var_dir == tmp_path / "var"
