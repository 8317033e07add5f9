"""Self-contained HTML reports: one file, images embedded, opens from a bucket or a disk."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from typing import Any, Iterable

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d232a;padding:0 1rem}h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2rem}table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;
padding:.25rem .6rem;text-align:right}th{background:#f4f6f8}td:first-child,th:first-child{text-align:left}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{background:#f4f6f8;border-radius:8px;padding:.7rem 1rem}
.card b{display:block;font-size:1.4rem}.gallery{display:flex;flex-wrap:wrap;gap:.6rem}
.tile{width:150px;font-size:.75rem;overflow-wrap:anywhere}
.tile img{width:150px;height:150px;object-fit:cover;border-radius:4px}
img.fig{max-width:100%}.muted{color:#667}nav a{margin-right:1rem}
.wrong{outline:3px solid #d33;outline-offset:2px}.tile.wrong div{color:#b00}
.right{outline:3px solid #2a2;outline-offset:2px}.badge{font-weight:600}
.scroll{overflow-x:auto;max-width:100%}pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f4f6f8;
padding:.6rem;border-radius:6px;font-size:.8rem}.pair{display:flex;gap:4px}.pair img{width:72px;height:72px;
object-fit:cover;border-radius:3px}td.thumbs{padding:2px}
"""


def data_uri(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(png).decode("ascii")


def esc(value: Any) -> str:
    return html.escape(str(value))


def num(value: float) -> str:
    """3 decimals, and never ``-0.000``."""
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


def table(headers: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """An HTML table; floats are shown with 3 decimals."""
    def cell(v: Any) -> str:
        return num(v) if isinstance(v, float) else esc(v)

    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def cards(items: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return num(v) if isinstance(v, float) else esc(v)

    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{fmt(v)}</b>{esc(k)}</div>' for k, v in items.items()) + "</div>"


def figure(png: bytes, alt: str) -> str:
    return f'<img class="fig" alt="{esc(alt)}" src="{data_uri(png)}">'


def gallery(tiles: list[tuple]) -> str:
    """Image tiles: ``(png bytes, caption, optional link[, correct])``.

    Every image is embedded, so the page works wherever it is copied. ``link`` is a
    relative file the run also publishes (e.g. the full-size overlay); ``correct`` False
    marks a wrong prediction with a red frame and a "wrong" badge, True with a green frame.
    """
    parts = []
    for png, caption, link, *rest in tiles:
        correct = rest[0] if rest else None
        img = f'<img alt="{esc(caption)}" src="{data_uri(png)}">'
        if link:
            img = f'<a href="{esc(link)}">{img}</a>'
        cls = {True: " right", False: " wrong", None: ""}[correct]
        badge = "<span class='badge'>wrong · </span>" if correct is False else ""
        parts.append(f'<div class="tile{cls}">{img}<div>{badge}{esc(caption)}</div></div>')
    return '<div class="gallery">' + "".join(parts) + "</div>"


def thumbs(*pngs: bytes, alt: str = "") -> str:
    """Small embedded images side by side (a pair of near-duplicates, say) for a table cell."""
    return "<div class='pair'>" + "".join(
        f'<img alt="{esc(alt)}" src="{data_uri(p)}">' for p in pngs) + "</div>"


def raw_table(headers: list[str], rows: Iterable[Iterable[str]]) -> str:
    """A table whose cells are already HTML (callers escape text with :func:`esc`)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" for row in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def configuration(spec: dict[str, Any], facts: dict[str, Any]) -> str:
    """The "Configuration" section: key facts (dataset, backbone, timing...) and the resolved spec."""
    import yaml

    rows = [[k, f"{v:.1f}" if isinstance(v, float) else v] for k, v in facts.items() if v is not None]
    return (table(["", "value"], rows)
            + "<p class='muted'>Resolved parameters (rerun with <code>--spec spec.yaml</code>):</p>"
            + f"<pre>{esc(yaml.safe_dump(spec, sort_keys=False))}</pre>")


@dataclass
class Report:
    title: str
    subtitle: str = ""
    sections: list[tuple[str, str]] = field(default_factory=list)

    def add(self, heading: str, body_html: str) -> None:
        self.sections.append((heading, body_html))

    def render(self) -> str:
        nav = "".join(f'<a href="#s{i}">{esc(h)}</a>' for i, (h, _) in enumerate(self.sections))
        body = "".join(f'<h2 id="s{i}">{esc(h)}</h2>{b}' for i, (h, b) in enumerate(self.sections))
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(self.title)}</title>"
                f"<style>{_CSS}</style></head><body><h1>{esc(self.title)}</h1>"
                f"<p class='muted'>{esc(self.subtitle)}</p><nav>{nav}</nav>{body}</body></html>")
