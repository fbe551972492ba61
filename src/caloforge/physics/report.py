"""Markdown report helpers, reusable by the validation, benchmark, quantization and demo reports.

>>> md = Report("Validation")                                   # doctest: +SKIP
>>> md.table(["metric", "value"], [["AUC", 0.51]])              # doctest: +SKIP
>>> md.image("longitudinal_profile.png", "Longitudinal profile")  # doctest: +SKIP
>>> md.write("out/report.md")                                   # atomic  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from caloforge.atomic import write_text


def fmt(value: Any, digits: int = 4) -> str:
    """Format a table cell: floats with ``digits`` significant digits, None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value == 0:
            return "0"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value).replace("|", "\\|")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    """A GitHub-flavoured markdown table (floats formatted with :func:`fmt`)."""
    head = "| " + " | ".join(fmt(h) for h in headers) + " |"
    sep = "|" + "|".join("---" for _ in headers) + "|"
    body = ["| " + " | ".join(fmt(c, digits) for c in row) + " |" for row in rows]
    return "\n".join([head, sep, *body]) + "\n"


def image_markdown(path: str | os.PathLike[str], caption: str,
                   relative_to: str | os.PathLike[str] | None = None) -> str:
    """``![caption](path)``, with ``path`` relative to ``relative_to`` (the report's folder)."""
    p = Path(path)
    if relative_to is not None:
        try:
            p = p.resolve().relative_to(Path(relative_to).resolve())
        except ValueError:
            p = Path(os.path.relpath(p.resolve(), Path(relative_to).resolve()))
    return f"![{caption}]({p.as_posix()})\n"


class Report:
    """Build a one-page markdown report section by section; :meth:`write` saves it atomically."""

    def __init__(self, title: str) -> None:
        self.parts: list[str] = [f"# {title}\n"]

    def heading(self, text: str, level: int = 2) -> Report:
        self.parts.append(f"\n{'#' * level} {text}\n")
        return self

    def text(self, text: str) -> Report:
        self.parts.append(text.rstrip() + "\n")
        return self

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> Report:
        self.parts.append("\n" + markdown_table(headers, rows, digits))
        return self

    def image(self, path: str | os.PathLike[str], caption: str,
              relative_to: str | os.PathLike[str] | None = None) -> Report:
        self.parts.append("\n" + image_markdown(path, caption, relative_to))
        return self

    def render(self) -> str:
        return "".join(self.parts)

    def write(self, path: str | os.PathLike[str]) -> Path:
        write_text(path, self.render())
        return Path(path)
