"""Small inline SVG charts of a queue's last hour: jobs finished per minute, lead time.

Drawn only for a queue that had traffic in the hour (an idle queue draws nothing).
"""

from __future__ import annotations

from ckptd.core.timefmt import format_duration, utc_iso
from ckptd.daemon.telemetry.metrics import MinuteSample
from ckptd.daemon.telemetry.page_parts import esc as _e


def bar_chart(minutes: tuple[MinuteSample, ...], now: float, width: int = 480,
              height: int = 120) -> str:
    """Jobs finished per minute over the last hour: done (green) under failed (red)."""
    pad_left, pad_bottom = 34, 16
    inner_w, inner_h = width - pad_left - 4, height - pad_bottom - 6
    start = (int(now // 60) - 59) * 60.0
    by_start = {m.start: m for m in minutes}
    peak = max([m.succeeded + m.failed for m in minutes] + [1])
    bar_w = inner_w / 60.0
    parts = [f'<svg class="chart" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             "<title>jobs finished per minute, last hour</title>"]
    for slot in range(60):
        sample = by_start.get(start + slot * 60.0)
        if sample is None:
            continue
        x = pad_left + slot * bar_w
        ok_h = inner_h * sample.succeeded / peak
        bad_h = inner_h * sample.failed / peak
        base = 6 + inner_h
        if ok_h:
            parts.append(f'<rect x="{x:.1f}" y="{base - ok_h:.1f}" width="{max(bar_w - 1, 1):.1f}"'
                         f' height="{ok_h:.1f}" fill="#2da44e"><title>{sample.succeeded} done, '
                         f'{sample.failed} failed at {_e(utc_iso(sample.start)[11:16])}'
                         "</title></rect>")
        if bad_h:
            parts.append(f'<rect x="{x:.1f}" y="{base - ok_h - bad_h:.1f}" '
                         f'width="{max(bar_w - 1, 1):.1f}" height="{bad_h:.1f}" fill="#cf222e"/>')
    parts += _axes(width, height, pad_left, pad_bottom, str(peak), "jobs/min")
    parts.append("</svg>")
    return "".join(parts)


def line_chart(minutes: tuple[MinuteSample, ...], now: float, width: int = 480,
               height: int = 120) -> str:
    """Lead time per minute over the last hour: mean (blue) and p95 estimate (orange)."""
    pad_left, pad_bottom = 34, 16
    inner_w, inner_h = width - pad_left - 4, height - pad_bottom - 6
    start = (int(now // 60) - 59) * 60.0
    values = [v for m in minutes for v in (m.lead_mean, m.lead_p95) if v is not None]
    peak = max(values + [0.001])
    parts = [f'<svg class="chart" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             "<title>lead time per minute, last hour</title>"]
    for attr, colour in (("lead_mean", "#0969da"), ("lead_p95", "#bc4c00")):
        points = []
        for m in minutes:
            value = getattr(m, attr)
            slot = (m.start - start) / 60.0
            if value is None or slot < 0:
                continue
            x = pad_left + (slot + 0.5) * inner_w / 60.0
            y = 6 + inner_h - inner_h * value / peak
            points.append(f"{x:.1f},{y:.1f}")
        if len(points) == 1:
            cx, cy = points[0].split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
        elif points:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                         f'points="{" ".join(points)}"/>')
    parts += _axes(width, height, pad_left, pad_bottom, format_duration(peak),
                   "lead time: mean (blue), p95 (orange)")
    parts.append("</svg>")
    return "".join(parts)


def _axes(width: int, height: int, pad_left: int, pad_bottom: int, top: str, label: str
          ) -> list[str]:
    bottom = height - pad_bottom
    return [f'<line x1="{pad_left}" y1="6" x2="{pad_left}" y2="{bottom}" stroke="#8c959f"/>',
            f'<line x1="{pad_left}" y1="{bottom}" x2="{width - 4}" y2="{bottom}" '
            'stroke="#8c959f"/>',
            f'<text x="{pad_left - 3}" y="14" font-size="10" text-anchor="end">{_e(top)}</text>',
            f'<text x="{pad_left - 3}" y="{bottom}" font-size="10" text-anchor="end">0</text>',
            f'<text x="{pad_left}" y="{height - 3}" font-size="10">-60 min</text>',
            f'<text x="{width - 4}" y="{height - 3}" font-size="10" text-anchor="end">now</text>',
            f'<text x="{(width + pad_left) / 2:.0f}" y="{height - 3}" font-size="10" '
            f'text-anchor="middle">{_e(label)}</text>']


def had_traffic(minutes: tuple[MinuteSample, ...]) -> bool:
    """True when some job finished in these minutes."""
    return any(m.succeeded or m.failed for m in minutes)
