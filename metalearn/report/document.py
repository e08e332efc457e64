"""The report as one document, written two ways: ``report.md`` (pictures
beside it as PNG files) and ``report.html`` (self-contained: the pictures
inline as base64 PNG, no scripts, no external CSS or fonts, readable
offline).

:func:`sections` decides what the report says, once; :func:`to_markdown`
and :func:`to_html` only render it.
"""

import base64
import html
import os
from typing import NamedTuple, Optional, Sequence

from metalearn.report import plots as plots_lib
from metalearn.report import tables
from metalearn.report import text
from metalearn.report import writeup
from metalearn.report.records import as_result


class Table(NamedTuple):
  """A table: header cells and rows of cells."""
  head: list
  rows: list


class Bullets(NamedTuple):
  """A bulleted list of lines."""
  items: list


class Strong(NamedTuple):
  """A line in bold."""
  text: str


class Picture(NamedTuple):
  """A PNG beside the report, by file name, with its caption."""
  file: str
  caption: str = ""


class Section(NamedTuple):
  """A heading and its blocks (``str`` paragraphs, :class:`Table`,
  :class:`Bullets`, :class:`Strong` or :class:`Picture`)."""
  title: str
  blocks: list


def sections(results: Sequence, *, reference: str = "maml",
             plots: Sequence[str] = (),
             notes: Sequence[str] = ()) -> list[Section]:
  """What the report says after its header, section by section.

  Args:
    results: records or dicts (failed ones get an error row).
    reference: the algorithm the ratios are against (the first if absent).
    plots: PNG file names beside the report, in order.
    notes: lines for a closing ``Notes`` section.

  Returns:
    Algorithms, Results, Ours vs the write-up, Against the reference,
    Adaptation, Recommendation, then Notes and Plots when given.
  """
  results = [as_result(r) for r in results]
  name, reasons = tables.recommend(results)
  out = [Section("Algorithms", [Bullets(tables.explanations(results))]),
         Section("Results", [Table(*tables.table_rows(results))]),
         Section("Ours vs the write-up (its own GPU and protocol)",
                 [writeup.CAPTION, Table(*writeup.writeup_rows(results))])]
  if results:
    base = tables.reference_of(results, reference)
    out.append(Section(f"Against {base}", [Table(*tables.ratio_rows(
        tables.ratios(results, base), base))]))
  head, rows = tables.step_loss_rows(results)
  if rows:
    out.append(Section("Adaptation: test query loss after each inner step",
                       [Table(head, rows)]))
  out.append(Section("Recommendation", [Strong(name or "none"),
                                        Bullets(reasons)]))
  if notes:
    out.append(Section("Notes", [Bullets(list(notes))]))
  if plots:
    out.append(Section("Plots", [Picture(p, plots_lib.caption(p))
                                 for p in plots]))
  return out


def _markdown_block(block) -> str:
  if isinstance(block, Table):
    return text.markdown_table(block.head, block.rows)
  if isinstance(block, Bullets):
    return "\n".join(f"- {line}" for line in block.items)
  if isinstance(block, Strong):
    return f"**{block.text}**"
  if isinstance(block, Picture):
    return f"![{block.file}]({block.file})" + (
        f"\n\n{block.caption}" if block.caption else "")
  return str(block)


def to_markdown(title: str, header: Sequence[str],
                body: Sequence[Section]) -> str:
  """GitHub markdown: ``# title``, the header as bullets, the sections."""
  blocks = [f"# {title}"] + ([Bullets(list(header))] if header else [])
  for section in body:
    blocks += [f"## {section.title}"] + list(section.blocks)
  rendered = (_markdown_block(b) for b in blocks)
  return "\n\n".join(b for b in rendered if b) + "\n"


def render_markdown(results: Sequence, *, title: str,
                    header: Sequence[str] = (), reference: str = "maml",
                    plots: Sequence[str] = (),
                    notes: Sequence[str] = ()) -> str:
  """The whole ``report.md``: setting, algorithms, tables, recommendation."""
  return to_markdown(title, header, sections(
      results, reference=reference, plots=plots, notes=notes))


_CSS = """
body { font-family: sans-serif; max-width: 1180px; margin: 1.5em auto;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em;
     border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; }
th { background: #f3f3f3; } td { text-align: right; }
td:first-child { text-align: left; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #444; }
"""


def _esc(x) -> str:
  return html.escape(str(x), quote=True)


def _html_block(block, images: dict) -> str:
  if isinstance(block, Table):
    head = "".join(f"<th>{_esc(c)}</th>" for c in block.head)
    rows = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) +
                   "</tr>\n" for r in block.rows)
    return (f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}"
            "</tbody>\n</table>")
  if isinstance(block, Bullets):
    return "<ul>\n" + "".join(f"<li>{_esc(i)}</li>\n"
                              for i in block.items) + "</ul>"
  if isinstance(block, Strong):
    return f"<p><strong>{_esc(block.text)}</strong></p>"
  if isinstance(block, Picture):
    data = base64.b64encode(images[block.file]).decode("ascii")
    return (f'<figure id="{_esc(block.file)}">\n'
            f'<img src="data:image/png;base64,{data}" '
            f'alt="{_esc(block.file)}">\n'
            f"<figcaption>{_esc(block.file)}: {_esc(block.caption)}"
            "</figcaption>\n</figure>")
  return f"<p>{_esc(block)}</p>"


def to_html(title: str, header: Sequence[str], body: Sequence[Section],
            images: dict) -> str:
  """One self-contained HTML page.

  Args:
    title: the page's heading and ``<title>``.
    header: lines shown as a list under the heading.
    body: the sections.
    images: ``{file name: PNG bytes}`` of every :class:`Picture`, inlined
      as ``data:`` URLs.

  Returns:
    The page: inline CSS, no scripts, nothing fetched.
  """
  parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>",
           '<meta charset="utf-8">', f"<title>{_esc(title)}</title>",
           f"<style>{_CSS}</style>", "</head>", "<body>",
           f"<h1>{_esc(title)}</h1>"]
  if header:
    parts.append(_html_block(Bullets(list(header)), images))
  for section in body:
    parts.append(f"<h2>{_esc(section.title)}</h2>")
    parts += [_html_block(b, images) for b in section.blocks]
  return "\n".join(parts + ["</body>", "</html>"]) + "\n"


def render_html(results: Sequence, *, title: str, image_dir: str,
                header: Sequence[str] = (), reference: str = "maml",
                plots: Sequence[str] = (),
                notes: Sequence[str] = (),
                images: Optional[dict] = None) -> str:
  """The whole ``report.html``: what ``report.md`` says, pictures inline.

  Args:
    results, title, header, reference, plots, notes: as for
      :func:`render_markdown`.
    image_dir: where the ``plots`` PNGs are (read unless in ``images``).
    images: ``{file name: PNG bytes}`` already at hand.

  Returns:
    The page (see :func:`to_html`).
  """
  images = dict(images or {})
  for p in plots:
    if p not in images:
      with open(os.path.join(image_dir, p), "rb") as f:
        images[p] = f.read()
  return to_html(title, header, sections(
      results, reference=reference, plots=plots, notes=notes), images)
