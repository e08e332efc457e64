"""Numbers as table cells, and cells as fixed-width or markdown tables."""

from typing import Optional, Sequence

from metalearn.report.records import finite

NA = "n/a"


def pct(x: Optional[float], ci: Optional[float] = None) -> str:
  """``0.7416, 0.012`` -> ``74.2% ± 1.2``; ``n/a`` when not a number."""
  if not finite(x):
    return NA
  return f"{100 * x:.1f}%" + (f" ± {100 * ci:.1f}" if finite(ci) else "")


def num(x: Optional[float], fmt: str = ".2f") -> str:
  """``x`` formatted with ``fmt``; ``n/a`` when not a number."""
  return format(x, fmt) if finite(x) else NA


def mib(n: Optional[float]) -> str:
  """Bytes as ``12.3 MiB``."""
  return f"{n / 2**20:.1f} MiB" if finite(n) else NA


def _flat(cell: str) -> str:
  return " ".join(cell.split())


def _last_filled(row: Sequence[str]) -> int:
  return max((i for i, c in enumerate(row) if c), default=0)


def text_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """Fixed-width columns: the first left-aligned, the rest right-aligned.

  A row whose trailing cells are empty (an error row) lets its last filled
  cell run on, left-aligned, without widening that column.
  """
  head = [_flat(c) for c in head]
  rows = [[_flat(c) for c in r] for r in rows]
  spans = [r[:_last_filled(r)] if _last_filled(r) < len(r) - 1 else r
           for r in rows]
  widths = [max(len(c) for c in col)
            for col in zip(*(list(r) + [""] * (len(head) - len(r))
                             for r in [head] + spans))]

  def line(cells):
    end = _last_filled(cells)
    spanning = end < len(cells) - 1
    out = [c.ljust(w) if i == 0 or (spanning and i == end) else c.rjust(w)
           for i, (c, w) in enumerate(zip(cells[:end + 1], widths))]
    return "  ".join(out).rstrip()

  lines = [line(head), line(["-" * w for w in widths])]
  return "\n".join(lines + [line(r) for r in rows])


def _md_cell(cell: str) -> str:
  return _flat(cell).replace("|", "\\|")


def markdown_table(head: Sequence[str],
                   rows: Sequence[Sequence[str]]) -> str:
  """A GitHub markdown table (``|`` and newlines in cells are escaped)."""
  lines = ["| " + " | ".join(map(_md_cell, head)) + " |",
           "|" + "---|" * len(head)]
  return "\n".join(lines + ["| " + " | ".join(map(_md_cell, r)) + " |"
                            for r in rows])


def table(head: Sequence[str], rows: Sequence[Sequence[str]], *,
          markdown: bool) -> str:
  """:func:`markdown_table` or :func:`text_table`."""
  return (markdown_table if markdown else text_table)(head, rows)
