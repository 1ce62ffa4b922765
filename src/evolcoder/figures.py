"""Self-contained SVG line charts for the run report.

`dvc plots show` renders with vega loaded from a CDN, so on an offline machine (and in a
pull request, which shows no HTML) the curves are blank. The report's figures are plain
SVG written here: no script, no font or library to fetch, visible in a browser, in a
Markdown preview and on a forge. A chart of a few series of a few points needs axes,
ticks and polylines, not a plotting library.
"""

from __future__ import annotations

from html import escape

W, H, LEFT, RIGHT, TOP, BOTTOM = 560, 320, 64, 150, 40, 48
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"]


def _ticks(low: float, high: float, n: int = 5) -> list[float]:
    if high <= low:
        high = low + 1.0
    step = (high - low) / (n - 1)
    return [low + i * step for i in range(n)]


def line_svg(title: str, xlabel: str, ylabel: str, xs: list[float],
             series: dict[str, list[float | None]]) -> str:
    """An SVG document: one polyline with point marks per series (None values are skipped)."""
    values = [v for ys in series.values() for v in ys if v is not None]
    y_low, y_high = (min(values + [0.0]), max(values + [0.0])) if values else (0.0, 1.0)
    y_high = y_high if y_high > y_low else y_low + 1.0
    x_low, x_high = (min(xs), max(xs)) if xs else (0.0, 1.0)
    x_high = x_high if x_high > x_low else x_low + 1.0
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x_low) / (x_high - x_low) * pw

    def py(y: float) -> float:
        return TOP + ph - (y - y_low) / (y_high - y_low) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
           f'<line x1="{LEFT}" y1="{TOP + ph}" x2="{LEFT + pw}" y2="{TOP + ph}" stroke="black"/>',
           f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}" stroke="black"/>',
           f'<text x="{LEFT + pw / 2}" y="{H - 10}" text-anchor="middle">{escape(xlabel)}</text>',
           f'<text x="14" y="{TOP + ph / 2}" text-anchor="middle" transform="rotate(-90 14 {TOP + ph / 2})">'
           f'{escape(ylabel)}</text>']
    for x in sorted(set(xs)):
        out.append(f'<text x="{px(x):.1f}" y="{TOP + ph + 16}" text-anchor="middle">{x:g}</text>')
    for y in _ticks(y_low, y_high):
        out.append(f'<line x1="{LEFT - 4}" y1="{py(y):.1f}" x2="{LEFT + pw}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3g}</text>')
    for i, (name, ys) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        points = [(px(x), py(y)) for x, y in zip(xs, ys) if y is not None]
        if points:
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
            out += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{colour}"/>' for a, b in points]
        out.append(f'<rect x="{LEFT + pw + 12}" y="{TOP + 16 * i}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{LEFT + pw + 26}" y="{TOP + 16 * i + 9}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
