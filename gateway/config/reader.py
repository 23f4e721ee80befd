"""
Walking a parsed TOML document: every problem recorded, none raised.

The reader is how a config file reports every error at once: a parser's
ValueError becomes a ConfigProblem naming the file, the key and the reason,
the default stands in, and reading goes on. Other modules that own a part
of the file (gateway/rewrite.py, gateway/journal.py, gateway/sign/dkim.py)
report through the same reader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
D = TypeVar("D")


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.reason}"


class ConfigError(Exception):
    """A config file that cannot be used; carries every problem found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class Reader:
    """Reads values out of TOML tables, turning each bad one into a problem named `file: where.key: reason`."""

    def __init__(self, file: str, base: Path | None = None) -> None:
        self.file = file
        self.base = base
        self.problems: list[ConfigProblem] = []

    def relative(self, text: str) -> Path:
        """A path from the file: a relative one is under the file's base directory (see load_config)."""
        return self.base / text if self.base is not None else Path(text)

    def problem(self, key: str, reason: str) -> None:
        self.problems.append(ConfigProblem(self.file, key, reason))

    def table(self, data: dict, key: str, allowed: Iterable[str]) -> dict:
        """`data`, after a problem for each of its keys not in `allowed`."""
        for k in data:
            if k not in allowed:
                self.problem(f"{key}.{k}" if key else k, f"unknown key (known: {', '.join(sorted(allowed))})")
        return data

    def get(self, data: dict, where: str, key: str, parse: Callable[[Any], T], default: D) -> T | D:
        if key not in data:
            return default
        try:
            return parse(data[key])
        except ValueError as e:
            self.problem(f"{where}.{key}" if where else key, str(e))
            return default

    def items(self, data: dict, where: str, key: str, parse: Callable[[Any], T], default: tuple) -> tuple:
        if key not in data:
            return default
        value = data[key]
        if not isinstance(value, list):
            self.problem(f"{where}.{key}", f"{value!r} is not a list")
            return default
        out = []
        for i, item in enumerate(value):
            try:
                out.append(parse(item))
            except ValueError as e:
                self.problem(f"{where}.{key}[{i}]", str(e))
        return tuple(out)

    def section(self, raw: dict, name: str, keys: Iterable[str]) -> dict:
        """The table `[name]` (empty when absent), its unknown keys reported."""
        data = raw.get(name, {})
        if not isinstance(data, dict):
            self.problem(name, "must be a table ([" + name + "])")
            return {}
        return self.table(data, name, keys)

    def array_of_tables(self, raw: dict, name: str) -> list[dict]:
        """The tables of `[[name]]` (none when absent)."""
        data = raw.get(name, [])
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            self.problem(name, f"must be an array of tables ([[{name}]])")
            return []
        return data
