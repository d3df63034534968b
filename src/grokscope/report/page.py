"""The page every report shares: sections of notes, text, tables, embedded figures and
preformatted blocks, rendered by Jinja2 (autoescaped) into one self-contained HTML file whose
Content-Security-Policy allows no network request."""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from ..atomic import atomic_write_text
from ..errors import GrokscopeError
from ..store import read_bounded

TEMPLATE = Path(__file__).with_name("page.html")
FIGURE_LIMIT = 64 << 20  # a figure is tens of kilobytes to a few megabytes


@dataclass
class Section:
    id: str
    title: str
    text: str = ""
    missing: list[str] = field(default_factory=list)
    tables: list[dict] = field(default_factory=list)
    figures: list[dict] = field(default_factory=list)
    pre: list[str] = field(default_factory=list)


def embed_png(path: Path, root: Path) -> str | None:
    """The PNG at ``path`` as base64, or None when it is not a regular file inside ``root`` (a
    report built from an untrusted directory must not carry files from elsewhere)."""
    try:
        return base64.b64encode(read_bounded(path, FIGURE_LIMIT, root=root)).decode()
    except GrokscopeError:
        return None


def command(*words: object) -> str:
    """A command line to suggest, every word shell-quoted (a path may hold `$(...)` or `;`)."""
    return " ".join(shlex.quote(str(word)) for word in words)


def fmt(value: Any, spec: str = ".4g") -> str:
    if value is None:
        return "—"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def render_page(out: Path, title: str, subtitle: str, sections: list[Section]) -> Path:
    """Write the page to ``out`` atomically and return its path."""
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    html = environment.from_string(TEMPLATE.read_text()).render(title=title, subtitle=subtitle, sections=sections)
    atomic_write_text(out, html)
    return out
