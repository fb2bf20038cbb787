"""Make user-controlled strings safe to place in Markdown and in file names.

Why: suite names, model folder names, file paths and error messages end up in report.md (rendered by GitHub,
editors and static-site tools that pass raw HTML through) and in output folder names. A name such as
``<img src=x onerror=alert(1)>``, ``[x](javascript:alert(1))`` or ``../../elsewhere`` must come out as inert
text and as a plain file name, never as markup or a path.
"""

from __future__ import annotations

import html
import re

# Markdown characters that start emphasis, links, images, code, tables or strikethrough when unescaped
# (``<``, ``>`` and ``&`` are turned into HTML entities instead, which also stops raw HTML and autolinks).
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]|~!#])")
_WHITESPACE = re.compile(r"\s+")
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._+\-]+")


def one_line(text: object) -> str:
    """``text`` as a single line: newlines, tabs and other whitespace runs become one space."""
    return _WHITESPACE.sub(" ", str(text)).strip()


def md_text(text: object) -> str:
    """Escape ``text`` for Markdown prose or a table cell: it renders literally, as one line, with no markup.

    HTML special characters become entities (no raw HTML, no ``<autolinks>``); the characters that open
    emphasis, links, images, code spans, strikethrough and table cells get a backslash.
    """
    escaped = html.escape(one_line(text), quote=False)
    return _MARKDOWN_SPECIALS.sub(r"\\\1", escaped)


def md_code(text: object, *, in_table: bool = False) -> str:
    """``text`` as an inline code span that no backtick inside it can close early.

    The fence is one backtick longer than the longest backtick run in ``text`` (CommonMark's rule). In a
    GitHub table a pipe splits the cell even inside code, so ``in_table`` escapes it as ``\\|``.
    """
    body = one_line(text)
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    if body.startswith("`") or body.endswith("`"):
        body = f" {body} "
    if in_table:
        body = body.replace("|", "\\|")
    return f"{fence}{body}{fence}"


def md_fence(text: str) -> str:
    """A fenced code block around multi-line ``text`` whose fence no line of ``text`` can close."""
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def safe_file_name(text: str, *, fallback: str = "unnamed") -> str:
    """A single path component made of letters, digits and ``._+-``: no separator, no ``..``, no hidden file.

    Runs of other characters become one ``_``; leading dots are dropped so the name can be neither ``.``,
    ``..`` nor hidden; an empty result becomes ``fallback``.
    """
    name = _UNSAFE_FILE_CHARS.sub("_", text).lstrip(".").strip("_")
    name = name.replace("..", "_")
    return name[:120] or fallback
