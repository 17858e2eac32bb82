"""The report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched.

Every value from the store is HTML-escaped: names and subjects come from CSV files and
templates, and must not be able to inject markup into the page.
"""

from __future__ import annotations

from html import escape

from outreach.report.build import Report, SegmentFunnel

PALETTE = (
    "#2f6f8f",
    "#4f9d69",
    "#d9a441",
    "#c8553d",
    "#7a5c99",
    "#5b8e7d",
    "#8c8c8c",
    "#b56576",
    "#3d5a80",
    "#98c1d9",
)
CSS = """
body{font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
color:#1f2933;background:#f7f7f5}
main{max-width:860px;margin:0 auto;padding:16px}
h1{font-size:1.5em;margin:.3em 0}h2{font-size:1.15em;margin:1.4em 0 .4em}
.muted{color:#66717c;font-size:.9em}
.cards{display:flex;flex-wrap:wrap;gap:8px}
.card{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:8px 12px;flex:1 1 130px}
.card b{display:block;font-size:1.4em}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.92em}
th,td{border-bottom:1px solid #e1e4e8;padding:6px 8px;text-align:left;vertical-align:top}
.scroll{overflow-x:auto}
svg{width:100%;height:auto;background:#fff;border:1px solid #e1e4e8;border-radius:8px}
svg text{font:13px system-ui,sans-serif;fill:#1f2933}
.attention li{margin:.3em 0}
"""


def render_html(report: Report, practice_name: str) -> str:
    """The whole page."""
    since = f" for sources enrolled since {report.since}" if report.since else ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Referral report: {escape(practice_name)}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>Referral report: {escape(practice_name)}</h1>",
        f'<p class="muted">Generated {report.generated_at:%Y-%m-%d %H:%M} UTC{escape(since)}.</p>',
    ]
    if report.is_empty:
        parts.append(
            "<p>No contacts yet: import your referral sources with "
            "<code>outreach contacts import FILE.csv</code>.</p>"
        )
    else:
        parts += _summary(report)
        parts += _attention(report)
        parts.append("<h2>Funnel by segment</h2>")
        parts += [_funnel_svg(f) for f in report.segments]
        parts += _steps(report)
        parts += _attribution(report)
        parts += _over_time(report)
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _summary(report: Report) -> list[str]:
    total = sum(s.contacts for s in report.segments)
    referrals = sum(s.referrals for s in report.segments)
    median = report.median_hours_to_first_reply
    first_reply = (
        "n/a"
        if median is None
        else (f"{median:.0f} h" if median < 48 else f"{median / 24:.1f} days")
    )
    cards = [
        ("contacts", total),
        ("referrals", referrals),
        ("median first reply", first_reply),
        ("bounces", report.bounces),
        ("opt-outs", report.opt_outs),
        ("paused", report.paused),
    ]
    return [
        '<div class="cards">',
        *(
            f'<div class="card"><b>{escape(str(value))}</b>{escape(label)}</div>'
            for label, value in cards
        ),
        "</div>",
    ]


def _attention(report: Report) -> list[str]:
    if not report.attention:
        return ["<h2>Needs attention</h2>", "<p>Nothing: every relationship is moving.</p>"]
    items = [
        f"<li><b>{escape(a.kind)}</b> · {escape(a.subject)}: {escape(a.detail)}</li>"
        for a in report.attention
    ]
    return ["<h2>Needs attention</h2>", '<ul class="attention">', *items, "</ul>"]


def _funnel_svg(funnel: SegmentFunnel) -> str:
    rows = [
        ("contacts", funnel.contacts, None),
        ("contacted", funnel.contacted, funnel.rates["contacted"]),
        ("replied", funnel.replied, funnel.rates["replied"]),
        ("engaged", funnel.engaged, funnel.rates["engaged"]),
        ("referring", funnel.referring, funnel.rates["referring"]),
    ]
    width, bar_left, bar_width, row_h = 420, 88, 250, 26
    height = 34 + row_h * len(rows)
    largest = max(funnel.contacts, 1)
    body = [
        f'<text x="10" y="20"><tspan font-weight="bold">{escape(funnel.label)}</tspan>'
        f" · {funnel.referrals} referrals</text>"
    ]
    for i, (name, count, rate) in enumerate(rows):
        y = 30 + i * row_h
        w = max(bar_width * count / largest, 1 if count else 0)
        rate_text = "" if rate is None else f" ({_pct(rate)})"
        body += [
            f'<text x="10" y="{y + 16}">{name}</text>',
            f'<rect x="{bar_left}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" rx="3" '
            f'fill="{PALETTE[i]}"/>',
            f'<text x="{bar_left + w + 6:.1f}" y="{y + 16}">{count}{rate_text}</text>',
        ]
    return (
        f'<svg viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Funnel for {escape(funnel.label)}">{"".join(body)}</svg>'
    )


def _steps(report: Report) -> list[str]:
    if not report.steps:
        return []
    width, row_h, left = 420, 24, 180
    height = 14 + row_h * len(report.steps)
    body = []
    for i, step in enumerate(report.steps):
        y = 8 + i * row_h
        rate = step.reply_rate or 0.0
        w = 140 * rate
        label = f"{step.segment[:12]} {step.step}: {step.template}"
        body += [
            f'<text x="10" y="{y + 15}">{escape(label[:26])}</text>',
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" rx="3" '
            f'fill="{PALETTE[1]}"/>',
            f'<text x="{left + w + 6:.1f}" y="{y + 15}">{_pct(step.reply_rate)} '
            f"({step.replies}/{step.sent})</text>",
        ]
    svg = (
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Reply rate per step">'
        f"{''.join(body)}</svg>"
    )
    note = '<p class="muted">Replies / messages sent, per segment and step.</p>'
    return ["<h2>Reply rate per step</h2>", svg, note]


def _attribution(report: Report) -> list[str]:
    parts = ["<h2>Referrals by source</h2>"]
    if not report.attribution:
        return [
            *parts,
            "<p>No referrals recorded yet (<code>outreach referrals add EMAIL</code>).</p>",
        ]
    rows = "".join(
        f"<tr><td>{escape(a.name)}<br><span class=muted>{escape(a.email)}</span></td>"
        f"<td>{escape(a.segment)}</td><td>{a.referrals}</td>"
        f"<td>{escape(a.first_reply_to or 'not by email')}</td></tr>"
        for a in report.attribution
    )
    totals = ", ".join(f"{escape(k)}: {v}" for k, v in sorted(report.referrals_by_segment.items()))
    return [
        *parts,
        '<div class="scroll"><table><tr><th>source</th><th>segment</th>'
        "<th>referrals</th><th>first reply drawn by</th></tr>",
        rows,
        "</table></div>",
        f'<p class="muted">By segment: {totals}</p>',
    ]


def _over_time(report: Report) -> list[str]:
    series = report.pipeline_over_time
    if len(series) < 2:
        return []
    stages = list(dict.fromkeys(s for _, counts in series for s in counts))  # pipeline order
    legend_rows = (len(stages) + 2) // 3
    width, plot_h, left, top = 420, 180, 34, 12
    height = top + plot_h + 24 + 20 * legend_rows
    base = top + plot_h
    peak = max(max(c.values(), default=0) for _, c in series) or 1
    x_step = (width - left - 20) / (len(series) - 1)
    body = [
        f'<line x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#999"/>',
        f'<text x="4" y="{top + 10}">{peak}</text>',
        f'<text x="{left}" y="{base + 16}">{series[0][0]}</text>',
        f'<text x="{width - 10}" y="{base + 16}" text-anchor="end">{series[-1][0]}</text>',
    ]
    for i, stage in enumerate(stages):
        points = " ".join(
            f"{left + j * x_step:.1f},{base - plot_h * counts.get(stage, 0) / peak:.1f}"
            for j, (_, counts) in enumerate(series)
        )
        color = PALETTE[i % len(PALETTE)]
        x, y = left + (i % 3) * 125, base + 38 + 20 * (i // 3)
        body += [
            f'<polyline fill="none" stroke="{color}" stroke-width="2.5" points="{points}"/>',
            f'<rect x="{x}" y="{y - 10}" width="10" height="10" fill="{color}"/>',
            f'<text x="{x + 14}" y="{y}">{escape(stage)}</text>',
        ]
    svg = (
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Pipeline over time">'
        f"{''.join(body)}</svg>"
    )
    return ["<h2>Pipeline over time</h2>", svg]
