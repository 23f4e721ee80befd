"""Tables as the Exchange Management Shell prints them: a header, a dashed rule, left-aligned columns."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# C0 and C1 controls and DEL: what a terminal acts on (ESC sequences can
# rewrite the screen, set the window title, or in some terminals more).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _escape_char(c: str) -> str:
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def printable(cell: str) -> str:
    """
    A cell as the terminal should show it: control characters, line
    breaks and invisible format characters (bidi overrides that reorder
    what follows) written as escapes. Cells hold what clients sent (HELO
    names, addresses, subjects, replies): an admin's terminal must not run
    it.
    """
    cell = _CONTROL.sub(lambda m: _escape_char(m.group(0)), cell)
    if not cell.isascii():
        cell = "".join(_escape_char(c) if unicodedata.category(c) in ("Cf", "Zl", "Zp") else c for c in cell)
    return cell


def print_table(header: tuple[str, ...], rows: Sequence[Sequence[object]], max_width: int | None = None) -> None:
    """
    Columns as wide as their widest cell (cut at `max_width` if given, except
    the last, which has the rest of the line: an error text cut short says
    nothing); trailing spaces trimmed; every cell printable.
    """
    cells = [tuple(printable(str(cell)) for cell in row) for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    if max_width is not None:
        widths = [min(max_width, w) for w in widths[:-1]] + widths[-1:]
    for line in [header, tuple("-" * w for w in widths), *cells]:
        print("  ".join(cell[:w].ljust(w) for cell, w in zip(line, widths, strict=False)).rstrip())
