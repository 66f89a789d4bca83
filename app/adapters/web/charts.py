"""A bar chart of the list's balance by stratum, drawn on the server as inline SVG (no
script, no library): for each stratum, one bar per arm, its height the arm's slot count.
The QC table beside it carries the same numbers for screen readers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from markupsafe import Markup

# Colour-blind-safe (Okabe-Ito), with a pattern-free legend that also names each arm.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
BAR, GAP, GROUP_GAP = 12, 2, 16
HEIGHT, TOP, BOTTOM, LEFT, RIGHT = 180, 12, 150, 36, 120


def balance_chart(
    strata: Sequence[Mapping[str, Any]], arms: Sequence[str], title: str, description: str
) -> Markup:
    if not strata or not arms:
        return Markup("")
    peak = max((max(s["counts"].values(), default=0) for s in strata), default=0) or 1
    group = len(arms) * (BAR + GAP) - GAP
    width = LEFT + len(strata) * (group + GROUP_GAP) + RIGHT
    total = TOP + HEIGHT + BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {total}" width="{width}" height="{total}" '
        'role="img" aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(description)}</desc>',
        f'<line x1="{LEFT}" y1="{TOP + HEIGHT}" x2="{width - RIGHT}" y2="{TOP + HEIGHT}" '
        'stroke="#333" />',
    ]
    for tick in sorted({0, peak // 2, peak}):
        y = TOP + HEIGHT - tick * HEIGHT / peak
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{tick}</text>'
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{width - RIGHT}" y2="{y:.1f}" stroke="#ddd" />'
        )
    for i, stratum in enumerate(strata):
        x0 = LEFT + GROUP_GAP / 2 + i * (group + GROUP_GAP)
        for j, arm in enumerate(arms):
            count = int(stratum["counts"].get(arm, 0))
            h = count * HEIGHT / peak
            x = x0 + j * (BAR + GAP)
            parts.append(
                f'<rect x="{x:.1f}" y="{TOP + HEIGHT - h:.1f}" width="{BAR}" height="{h:.1f}" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(str(stratum["stratum"]))}'
                f" - {escape(arm)}: {count}</title></rect>"
            )
        cx = x0 + group / 2
        label = escape(str(stratum["stratum"]))
        parts.append(
            f'<text transform="translate({cx:.1f},{TOP + HEIGHT + 8}) rotate(45)" '
            f'font-size="11">{label}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text part above is escaped


def legend(arms: Sequence[str]) -> list[tuple[str, str]]:
    return [(arm, PALETTE[j % len(PALETTE)]) for j, arm in enumerate(arms)]
