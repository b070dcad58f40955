"""Charts drawn on the server as SVG (no script, no inline style: the panel's CSP allows
neither): pure functions from figures to markup, escaped by the template engine's Markup."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

chart_width_pixels = 1200
chart_height_pixels = 220
chart_bars_max = 96


@dataclass(frozen=True)
class Bar:
    label: str  # shown under the bar (may be empty) and in its tooltip
    value: int  # the whole bar
    part: int = 0  # the share drawn in the second colour (e.g. the approved authorizations)


def bar_chart(bars: Sequence[Bar], title: str) -> Markup:
    """A bar chart of non-negative values, each bar split into its part and the rest."""
    shown = list(bars)[-chart_bars_max:]
    width, height, bottom = chart_width_pixels, chart_height_pixels, 20
    top = max([b.value for b in shown] + [1])
    slot = width / max(len(shown), 1)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    usable = height - bottom - 4
    for index, bar in enumerate(shown):
        x = index * slot + slot * 0.1
        bar_width = max(slot * 0.8, 1)
        whole = usable * max(bar.value, 0) / top
        part = usable * min(max(bar.part, 0), max(bar.value, 0)) / top
        y = height - bottom - whole
        tip = escape(f"{bar.label}: {bar.value} ({bar.part})")
        parts.append(f'<g><title>{tip}</title>'
                     f'<rect class="bar-rest" x="{x:.1f}" y="{y:.1f}" width="{bar_width:.1f}" '
                     f'height="{whole - part:.1f}"/>'
                     f'<rect class="bar-part" x="{x:.1f}" y="{height - bottom - part:.1f}" '
                     f'width="{bar_width:.1f}" height="{part:.1f}"/></g>')
        if bar.label:
            parts.append(f'<text x="{x + bar_width / 2:.1f}" y="{height - 5}" '
                         f'text-anchor="middle">{escape(bar.label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
