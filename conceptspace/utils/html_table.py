"""A small escaped HTML table, the ``_repr_html_`` of the objects a notebook user prints.

Why in the foundation: activations, results and the report each show one, and none may import another's layer.
Every cell is escaped, since dataset names and test ids come from user files.
"""

from __future__ import annotations

import html
from collections.abc import Sequence


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], caption: str, more: int = 0) -> str:
    """``<table>`` with a caption, one header row and the given rows; ``more`` > 0 adds "... N more"."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    foot = f"<p>... {more} more</p>" if more > 0 else ""
    return (f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>{foot}")
