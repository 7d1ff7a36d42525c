"""Small bar charts as server-rendered SVG: no JavaScript chart library, nothing fetched.

Labels come from the data (platform names, dates) and are escaped; the chart uses presentation
attributes and CSS classes only (no `style=""`), so it renders under the console's strict CSP.
"""
from __future__ import annotations

from html import escape

from markupsafe import Markup

BAR_COLOUR = "#b3261e"
TEXT_COLOUR = "#222"


def _svg(testid: str, title: str, width: int, height: int, body: list[str]) -> Markup:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" data-testid="{escape(testid)}" class="chart" role="img" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" aria-label="{escape(title)}">'
            f"<title>{escape(title)}</title>")
    return Markup(head + "".join(body) + "</svg>")


def horizontal_bars(values: list[tuple[str, int]], *, testid: str, title: str, width: int = 480) -> Markup:
    """One labelled bar per (label, count), longest first as given; e.g. flagged items per platform."""
    row, label_w, pad = 24, 140, 6
    height = max(1, len(values)) * row + 2 * pad
    top = max((v for _, v in values), default=0) or 1
    span = width - label_w - 60
    body: list[str] = []
    if not values:
        body.append(f'<text x="{pad}" y="{pad + 16}" fill="{TEXT_COLOUR}" font-size="13">no data yet</text>')
    for i, (label, value) in enumerate(values):
        y = pad + i * row
        w = round(span * value / top)
        body.append(
            f'<g class="bar" data-label="{escape(str(label))}" data-value="{int(value)}">'
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end" fill="{TEXT_COLOUR}" font-size="13">{escape(str(label))}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row - 8}" fill="{BAR_COLOUR}"><title>{escape(str(label))}: {int(value)}</title></rect>'
            f'<text x="{label_w + w + 4}" y="{y + 16}" fill="{TEXT_COLOUR}" font-size="12">{int(value)}</text></g>'
        )
    return _svg(testid, title, width, height, body)


def columns(values: list[tuple[str, int]], *, testid: str, title: str, height: int = 200) -> Markup:
    """One column per (label, count) in the order given; e.g. flagged items per day."""
    col, gap, base, pad = 18, 4, 40, 8
    width = max(240, len(values) * (col + gap) + 2 * pad + 30)
    top = max((v for _, v in values), default=0) or 1
    span = height - base - pad
    body = [f'<line x1="{pad}" y1="{height - base}" x2="{width - pad}" y2="{height - base}" stroke="{TEXT_COLOUR}" stroke-width="1"/>']
    if not values:
        body.append(f'<text x="{pad}" y="{pad + 16}" fill="{TEXT_COLOUR}" font-size="13">no data yet</text>')
    for i, (label, value) in enumerate(values):
        x = pad + 30 + i * (col + gap)
        h = round(span * value / top)
        y = height - base - h
        short = str(label)[5:] if len(str(label)) == 10 else str(label)  # 2026-05-20 -> 05-20
        body.append(
            f'<g class="bar" data-label="{escape(str(label))}" data-value="{int(value)}">'
            f'<rect x="{x}" y="{y}" width="{col}" height="{h}" fill="{BAR_COLOUR}"><title>{escape(str(label))}: {int(value)}</title></rect>'
            f'<text x="{x + col / 2}" y="{y - 3}" text-anchor="middle" fill="{TEXT_COLOUR}" font-size="10">{int(value)}</text>'
            f'<text x="{x + col / 2}" y="{height - base + 12}" text-anchor="end" fill="{TEXT_COLOUR}" font-size="10" '
            f'transform="rotate(-45 {x + col / 2} {height - base + 12})">{escape(short)}</text></g>'
        )
    return _svg(testid, title, width, height, body)
