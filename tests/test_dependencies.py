"""setup.cfg bounds every dependency, and the suite runs inside those bounds (issue 18: an unbounded upgrade broke ALPN clients)."""

import configparser
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

SETUP_CFG = Path(__file__).resolve().parent.parent / "setup.cfg"


def requirements() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(SETUP_CFG)
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in cfg["options.extras_require"].values():
        lines += extra.splitlines()
    return [Requirement(line) for line in lines if line.strip()]


def test_every_dependency_has_a_lower_and_an_upper_bound():
    for req in requirements():
        operators = {spec.operator for spec in req.specifier}
        assert ">=" in operators and "<" in operators, f"{req} is not bounded on both sides"


def test_the_installed_versions_the_suite_runs_against_are_inside_the_bounds():
    outside = [f"{req.name} {version(req.name)} not in {req.specifier}" for req in requirements()
               if not req.specifier.contains(version(req.name), prereleases=True)]
    assert outside == []
