"""The report's inline SVG charts: a cost waterfall, lines over event time, and a settlement graph.

Each chart is one ``<svg>`` element with its text escaped (``html.escape``), no script and no external
reference, so the page that embeds it stays self-contained. Money arrives as integer micro-USD and is
only formatted here, for labels.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ledger.economics.money import format_usd
from ledger.wire.timefmt import fmt_time

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")

E = html.escape
W, H = 820, 300  # chart size in px
ML, MR, MT, MB = 80, 200, 20, 40  # margins: left axis labels, right legend, top, bottom axis labels


def usd(micros: int | float) -> str:
    return format_usd(int(micros))


def short_usd(micros: float) -> str:
    dollars = micros / 1_000_000
    return f"${dollars:,.2f}" if abs(dollars) >= 0.01 or dollars == 0 else f"${dollars:.4f}"


def _hhmm(us: float) -> str:
    return fmt_time(int(us))[11:16]


def _nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def _frame(body: list[str], label: str) -> str:
    return (f'<svg role="img" aria-label="{E(label)}" viewBox="0 0 {W} {H}" '
            f'width="{W}" height="{H}" class="chart">' + "".join(body) + "</svg>")


def empty_chart(label: str, why: str) -> str:
    return _frame([f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="muted">{E(why)}</text>'], label)


def svg_waterfall(stages: Sequence[tuple[str, int]], label: str, fmt: Callable[[float], str] = short_usd) -> str:
    """Floating bars: each stage starts where the previous ended; the last bar is the total."""
    if not stages:
        return empty_chart(label, "no stages")
    total = sum(v for _, v in stages)
    top = max(total, 1)
    n = len(stages) + 1
    slot = (W - ML - 20) / n
    bw = slot * 0.6

    def y(v: float) -> float:
        return MT + (H - MT - MB) * (1 - v / top)

    body = [f'<line x1="{ML}" y1="{y(0):.1f}" x2="{W - 20}" y2="{y(0):.1f}" class="axis"/>']
    body.extend(f'<text x="{ML - 6}" y="{y(t) + 4:.1f}" text-anchor="end" class="tick">{E(fmt(t))}</text>'
                f'<line x1="{ML}" y1="{y(t):.1f}" x2="{W - 20}" y2="{y(t):.1f}" class="grid"/>'
                for t in _nice_ticks(0, top))
    cum = 0
    for i, (name, v) in enumerate([*stages, ("total", total)]):
        lo, hi = (0, total) if i == n - 1 else (cum, cum + v)
        x = ML + i * slot + (slot - bw) / 2
        color = "#555" if i == n - 1 else PALETTE[i % len(PALETTE)]
        body.append(f'<rect x="{x:.1f}" y="{y(hi):.1f}" width="{bw:.1f}" height="{max(y(lo) - y(hi), 1):.1f}" '
                    f'fill="{color}"><title>{E(name)}: {E(fmt(v))}</title></rect>'
                    f'<text x="{x + bw / 2:.1f}" y="{y(hi) - 4:.1f}" text-anchor="middle" class="val">'
                    f'{E(fmt(v))}</text>'
                    f'<text x="{x + bw / 2:.1f}" y="{H - MB + 16}" text-anchor="middle" class="tick">{E(name)}</text>')
        if i < n - 1:
            cum += v
    return _frame(body, label)


def svg_lines(series: Mapping[str, Sequence[Sequence[float]]], label: str, yfmt: Callable[[float], str], *,
              dashed: Mapping[str, Sequence[Sequence[float]]] | None = None, y_range: tuple[float, float] | None = None,
              ) -> str:
    """One line per series over event time (x = microseconds); ``dashed`` adds projections, same colours."""
    dashed = dashed or {}
    pts = [p for s in (*series.values(), *dashed.values()) for p in s]
    if not pts:
        return empty_chart(label, "no data yet")
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = y_range or (min(0.0, min(p[1] for p in pts)), max(p[1] for p in pts))
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def fx(v: float) -> float:
        return ML + (W - ML - MR) * (v - x0) / (x1 - x0)

    def fy(v: float) -> float:
        return MT + (H - MT - MB) * (1 - (v - y0) / (y1 - y0))

    body = [f'<line x1="{ML}" y1="{H - MB}" x2="{W - MR}" y2="{H - MB}" class="axis"/>'
            f'<line x1="{ML}" y1="{MT}" x2="{ML}" y2="{H - MB}" class="axis"/>']
    body.extend(f'<text x="{ML - 6}" y="{fy(t) + 4:.1f}" text-anchor="end" class="tick">{E(yfmt(t))}</text>'
                f'<line x1="{ML}" y1="{fy(t):.1f}" x2="{W - MR}" y2="{fy(t):.1f}" class="grid"/>'
                for t in _nice_ticks(y0, y1))
    body.extend(f'<text x="{fx(t):.1f}" y="{H - MB + 16}" text-anchor="middle" class="tick">{E(_hhmm(t))}</text>'
                for t in _nice_ticks(x0, x1))
    names = list(dict.fromkeys([*series, *dashed]))
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        for s, extra in ((series.get(name, ()), ""), (dashed.get(name, ()), ' stroke-dasharray="5 4"')):
            if s:
                path = " ".join(f"{fx(p[0]):.1f},{fy(p[1]):.1f}" for p in s)
                body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{extra}>'
                            f"<title>{E(name)}</title></polyline>")
        ly = MT + 10 + 18 * i
        body.append(f'<rect x="{W - MR + 12}" y="{ly - 9}" width="12" height="12" fill="{color}"/>'
                    f'<text x="{W - MR + 30}" y="{ly + 1}" class="legend">{E(name)}</text>')
    return _frame(body, label)


def svg_graph(agents: Sequence[str], edges: Sequence[Mapping[str, Any]], label: str) -> str:
    """Agents on a circle; an arrow payer -> payee per edge, labelled with its amount."""
    if not agents:
        return empty_chart(label, "no agents")
    cx, cy, r = W / 2, H / 2, min(W, H) / 2 - 50
    pos = {a: (cx + r * math.cos(2 * math.pi * i / len(agents) - math.pi / 2),
               cy + r * math.sin(2 * math.pi * i / len(agents) - math.pi / 2)) for i, a in enumerate(agents)}
    body = ['<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
            'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#444"/></marker></defs>']
    for e in edges:
        (x1, y1), (x2, y2) = pos[e["payer"]], pos[e["payee"]]
        d = math.hypot(x2 - x1, y2 - y1) or 1
        ux, uy = (x2 - x1) / d, (y2 - y1) / d
        ax, ay, bx, by = x1 + 38 * ux, y1 + 38 * uy, x2 - 38 * ux, y2 - 38 * uy
        dash = ' stroke-dasharray="5 4"' if e.get("status") == "open" else ""
        body.append(f'<line x1="{ax:.1f}" y1="{ay:.1f}" x2="{bx:.1f}" y2="{by:.1f}" stroke="#444" stroke-width="1.5" '
                    f'marker-end="url(#arrow)"{dash}/>'
                    f'<text x="{(ax + bx) / 2 - 8 * uy:.1f}" y="{(ay + by) / 2 + 8 * ux:.1f}" text-anchor="middle" '
                    f'class="val">{E(usd(e["amount_micros"]))}</text>')
    for i, a in enumerate(agents):
        x, y = pos[a]
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="36" fill="{PALETTE[i % len(PALETTE)]}" opacity="0.85"/>'
                    f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" class="node">{E(a)}</text>')
    return _frame(body, label)



__all__ = ["PALETTE", "empty_chart", "short_usd", "svg_graph", "svg_lines", "svg_waterfall", "usd"]
