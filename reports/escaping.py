"""Escaping for what the reports write: LaTeX, Markdown, and shell commands shown in Markdown.

Names in a report (run ids and names, attack labels, model and dataset names,
hardware and version strings) come from configs and stores, so they may hold
anything: ``|``, ``<script>``, newlines, backticks, ``\\input{...}``. Each
writer passes them through one function here so that they print as the text
they are and never as markup.
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from collections.abc import Collection, Sequence
from typing import Any

import pandas as pd

__all__ = ["latex_escape", "markdown_code", "markdown_code_block", "markdown_escape", "markdown_table", "option",
           "shell_command"]

_LATEX = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#", "_": r"\_", "%": r"\%",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", "[": "{[}", "]": "{]}", "*": "{*}",  # a cell may follow \\, which reads [ and * as options
}
_MARKDOWN = set("\\`*[]<>|&~$#")
"""Backslash-escaped everywhere (CommonMark escapes any ASCII punctuation; GFM tables need ``\\|``)."""


def _line_break(character: str) -> bool:
    """A character that would end a line or that prints as a control: shown as a space."""
    return unicodedata.category(character) in ("Cc", "Zl", "Zp")


def latex_escape(value: Any) -> str:
    """``value`` as LaTeX text: every special character as its literal, line breaks and controls as spaces."""
    return "".join(" " if _line_break(c) else _LATEX.get(c, c) for c in str(value))


def markdown_escape(value: Any) -> str:
    """``value`` as inline Markdown text (a table cell, a heading, a sentence): printed as written.

    Markup characters are backslash-escaped; ``_`` only where it could open or
    close emphasis (not between two letters or digits, so ``fooling_rate``
    stays readable); line breaks and control characters become spaces, so a
    value never starts a new line, row or block.
    """
    text = str(value)
    out = []
    for i, c in enumerate(text):
        if _line_break(c):
            out.append(" ")
        elif c in _MARKDOWN:
            out.append("\\" + c)
        elif c == "_" and not (0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()):
            out.append("\\_")
        else:
            out.append(c)
    return "".join(out)


def markdown_table(frame: pd.DataFrame, *, verbatim: Collection[str] = (), **kwargs: Any) -> str:
    """``frame.to_markdown(index=False)`` with every text cell and header passed through :func:`markdown_escape`.

    Cells of the columns named in ``verbatim`` are Markdown already (built from escaped text) and kept as they are.
    """
    shown = frame.copy()
    shown.columns = [markdown_escape(c) for c in frame.columns]
    for i, name in enumerate(frame.columns):
        column = shown.iloc[:, i]
        if name not in verbatim and not pd.api.types.is_numeric_dtype(column):
            shown.isetitem(i, column.map(lambda v: markdown_escape(v) if isinstance(v, str) else v))
    return shown.to_markdown(index=False, **kwargs)


def markdown_code(text: Any) -> str:
    """``text`` as an inline code span (monospace, verbatim): the fence is longer than any run of backticks in it.

    A code span is one line: line breaks and control characters become spaces (use
    :func:`markdown_code_block` for text that must keep them).
    """
    text = "".join(" " if _line_break(c) else c for c in str(text))
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text[:1] in ("`", " ", "") or text[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def option(flag: str, value: Any) -> list[str]:
    """``[flag, value]``, or ``[flag=value]`` when the value starts with ``-`` (argparse would take it for a flag)."""
    value = str(value)
    return [f"{flag}={value}"] if value.startswith("-") else [flag, value]


def shell_command(argv: Sequence[Any]) -> str:
    """One command line, each word shell-quoted: pasted into a POSIX shell it gives back ``argv``."""
    return shlex.join(str(word) for word in argv)


def markdown_code_block(text: str, info: str = "sh") -> str:
    """``text`` as a fenced code block, printed verbatim: the fence is longer than any run of backticks in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"
