"""The page every report shares: sections of notes, text, tables, embedded figures and
preformatted blocks, rendered by Jinja2 (autoescaped) into one self-contained HTML file whose
Content-Security-Policy allows no network request."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from ..atomic import atomic_write_text

TEMPLATE = Path(__file__).with_name("page.html")


@dataclass
class Section:
    id: str
    title: str
    text: str = ""
    missing: list[str] = field(default_factory=list)
    tables: list[dict] = field(default_factory=list)
    figures: list[dict] = field(default_factory=list)
    pre: list[str] = field(default_factory=list)


def embed_png(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


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
