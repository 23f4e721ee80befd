"""
Which configuration file: one answer for twistd, its workers and every
`exgateway` command.

In order: `--config FILE`, else `$EXGATEWAY_CONFIG`, else
`/etc/exgateway/exgateway.toml`, else `./exgateway.toml`, else the annotated
sample inside the package. The first two are the admin's explicit choice
and are used even if the file is missing (then loading it fails with the
reason), never skipped for the next one. The packaged sample is read-only
(an upgrade replaces it): `exgateway config init [DIR]` writes an editable
copy.

Relative paths in a file (`server.var_dir`, a CA file) are relative to the
file's own directory, so the same file means the same directories whichever
directory a process starts in. The packaged sample is the exception: its
directory is inside site-packages, which is no place for a queue, so its
`var_dir = "var"` is relative to the current directory (and the start-up line
says so).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENVIRONMENT = "EXGATEWAY_CONFIG"
SYSTEM_CONFIG = Path("/etc/exgateway/exgateway.toml")
LOCAL_NAME = "exgateway.toml"


def packaged_sample() -> Path:
    """
    The annotated sample, etc/exgateway.toml. In a checkout `gateway/etc` is a
    link to `etc/`; a built package carries a copy.
    """
    return Path(__file__).parent / "etc" / "exgateway.toml"


@dataclass(frozen=True)
class ConfigLocation:
    """An absolute config path and how it was found (for the start-up line and error messages)."""

    path: Path
    source: str

    @property
    def packaged(self) -> bool:
        return is_packaged_sample(self.path)


def is_packaged_sample(path: Path) -> bool:
    sample = packaged_sample()
    try:
        return os.path.samefile(path, sample)
    except OSError:
        return Path(path).absolute() == sample.absolute()


def find_config(given: str | Path | None = None, environ=os.environ, cwd: Path | None = None,
                system: Path | None = None) -> ConfigLocation:
    """The config file to use; `given` is the --config option (None if absent)."""
    cwd = Path.cwd() if cwd is None else cwd
    system = SYSTEM_CONFIG if system is None else system
    if given:
        return ConfigLocation(cwd / Path(given), "--config")
    if environ.get(ENVIRONMENT):
        return ConfigLocation(cwd / Path(environ[ENVIRONMENT]), f"${ENVIRONMENT}")
    if system.is_file():
        return ConfigLocation(system, str(system))
    local = cwd / LOCAL_NAME
    if local.is_file():
        return ConfigLocation(local, f"./{LOCAL_NAME}")
    return ConfigLocation(packaged_sample().absolute(), "the packaged sample, read-only: `exgateway config init` writes an editable copy")


def base_directory(path: str | Path, cwd: Path | None = None) -> Path:
    """What relative paths in the file at `path` are relative to: its directory; for the packaged sample, the current one."""
    cwd = Path.cwd() if cwd is None else cwd
    if is_packaged_sample(Path(path)):
        return cwd
    return (cwd / Path(path)).parent


__all__ = ["ConfigLocation", "ENVIRONMENT", "SYSTEM_CONFIG", "base_directory", "find_config", "is_packaged_sample", "packaged_sample"]
