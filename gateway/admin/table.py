"""Tables as the Exchange Management Shell prints them: a header, a dashed rule, left-aligned columns."""

from __future__ import annotations


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]], max_width: int | None = None) -> None:
    """Columns as wide as their widest cell (cut at `max_width` if given); trailing spaces trimmed."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    if max_width is not None:
        widths = [min(max_width, w) for w in widths]
    for line in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell[:w].ljust(w) for cell, w in zip(line, widths)).rstrip())
