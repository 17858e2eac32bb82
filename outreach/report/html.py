"""The report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched.

Every value from the store is HTML-escaped: names and subjects come from CSV files and
templates, and must not be able to inject markup into the page.
"""

from __future__ import annotations

from html import escape

from outreach.mail.notices import plural, when_local
from outreach.report.build import Attention, Report, SegmentFunnel

# Okabe and Ito's colour-blind-safe palette (the yellow left out: too pale on white), then two
# darker tones; the lines of the pipeline chart also differ by dash, so no two look alike.
PALETTE = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#d55e00",
    "#cc79a7",
    "#56b4e9",
    "#000000",
    "#8c510a",
    "#6a3d9a",
)
DASHES = ("", "6 3", "2 3", "8 3 2 3")
CSS = """
body{font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
color:#1f2933;background:#f7f7f5;overflow-wrap:anywhere}
main{max-width:860px;margin:0 auto;padding:16px}
h1{font-size:1.5em;margin:.3em 0}h2{font-size:1.15em;margin:1.4em 0 .4em}
.muted{color:#66717c;font-size:.9em}
.cards{display:flex;flex-wrap:wrap;gap:8px}
.card{background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:8px 12px;flex:1 1 110px}
.card b{display:block;font-size:1.4em}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.92em;table-layout:fixed}
th,td{border-bottom:1px solid #e1e4e8;padding:6px 8px;text-align:left;vertical-align:top}
th.n,td.n{text-align:right;width:4.2em}
tbody th{background:#f0f2f4;font-weight:600}
code{font-size:.9em;background:#eef0f2;padding:0 3px;border-radius:3px}
svg{width:100%;height:auto;background:#fff;border:1px solid #e1e4e8;border-radius:8px}
svg text{font:13px system-ui,sans-serif;fill:#1f2933}
.attention li{margin:.4em 0}
@media (max-width:600px){
.stack thead{display:none}
.stack tr{display:block;border-bottom:1px solid #e1e4e8;padding:4px 0}
.stack td{display:block;border:0;padding:2px 8px;width:auto;text-align:left}
.stack td[data-label]::before{content:attr(data-label) ": ";color:#66717c}
}
"""


def render_html(report: Report, practice_name: str) -> str:
    """The whole page."""
    since = f" for sources enrolled since {report.since}" if report.since else ""
    generated = when_local(report.local_time)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Referral report: {escape(practice_name)}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>Referral report: {escape(practice_name)}</h1>",
        f'<p class="muted">Generated {escape(generated)} ({escape(report.timezone)})'
        f"{escape(since)}.</p>",
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
        parts.append(
            '<p class="muted">Each percentage is of the previous stage: replied of contacted, '
            "engaged of replied...</p>"
        )
        parts += [_funnel_svg(f) for f in report.active_segments]
        if report.empty_segments:
            parts.append(f'<p class="muted">{escape(report.empty_segments)}</p>')
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
        plural(total, "contact").split(" ", 1),
        plural(referrals, "referral").split(" ", 1),
        (first_reply, "median time to a first reply"),
        plural(report.bounces, "bounce").split(" ", 1),
        plural(report.opt_outs, "opt-out").split(" ", 1),
        (str(report.paused), "paused"),
    ]
    return [
        '<div class="cards">',
        *(
            f'<div class="card"><b>{escape(value)}</b>{escape(label)}</div>'
            for value, label in cards
        ),
        "</div>",
    ]


def _attention(report: Report) -> list[str]:
    if not report.attention:
        return ["<h2>Needs attention</h2>", "<p>Nothing: every relationship is moving.</p>"]
    items = [_attention_item(a) for a in report.attention]
    return ["<h2>Needs attention</h2>", '<ul class="attention">', *items, "</ul>"]


def _attention_item(item: Attention) -> str:
    key = (
        f' <span class="muted">(Message-ID {escape(item.message_key)})</span>'
        if item.message_key
        else ""
    )
    command = f"<br><code>{escape(item.command)}</code>" if item.command else ""
    return (
        f"<li><b>{escape(item.kind)}</b> · {escape(item.subject)}: {escape(item.detail)}"
        f"{key}{command}</li>"
    )


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
        f" · {plural(funnel.referrals, 'referral')}</text>"
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
    steps = report.active_steps
    if not steps:
        return []
    labels = {s.segment: s.label for s in report.segments}
    rows = []
    for i, step in enumerate(steps):
        if i == 0 or steps[i - 1].segment != step.segment:
            label = escape(labels.get(step.segment, step.segment))
            rows.append(f'<tr><th colspan="4">{label}</th></tr>')
        rows.append(
            f"<tr><td>{escape(step.name or str(step.step))}</td>"
            f'<td class="n">{step.sent}</td><td class="n">{step.replies}</td>'
            f'<td class="n">{_pct(step.reply_rate)}</td></tr>'
        )
    return [
        "<h2>Reply rate per step</h2>",
        '<table><thead><tr><th>step</th><th class="n">sent</th>'
        '<th class="n">replies</th><th class="n">rate</th></tr></thead><tbody>',
        *rows,
        "</tbody></table>",
        '<p class="muted">A reply counts for the last email sent before it.</p>',
    ]


def _attribution(report: Report) -> list[str]:
    parts = ["<h2>Referrals by source</h2>"]
    if not report.attribution:
        return [
            *parts,
            "<p>No referrals recorded yet (<code>outreach referrals add EMAIL</code>).</p>",
        ]
    labels = {s.segment: s.label for s in report.segments}
    rows = "".join(
        f'<tr><td data-label="source">{escape(a.name)}<br>'
        f'<span class="muted">{escape(a.email)}</span></td>'
        f'<td data-label="segment">{escape(labels.get(a.segment, a.segment))}</td>'
        f'<td class="n" data-label="referrals">{a.referrals}</td>'
        f'<td data-label="first reply drawn by">{escape(a.first_reply_to or "not by email")}'
        "</td></tr>"
        for a in report.attribution
    )
    totals = ", ".join(
        f"{escape(labels.get(k, k))}: {v}" for k, v in sorted(report.referrals_by_segment.items())
    )
    return [
        *parts,
        '<table class="stack"><thead><tr><th>source</th><th>segment</th>'
        '<th class="n">referrals</th><th>first reply drawn by</th></tr></thead><tbody>',
        rows,
        "</tbody></table>",
        f'<p class="muted">By segment: {totals}</p>',
    ]


def _over_time(report: Report) -> list[str]:
    """The pipeline over time: only with two distinct dates or more (one is a dot)."""
    series = report.pipeline_over_time
    if len({day for day, _counts in series}) < 2:
        return []
    stages = list(dict.fromkeys(s for _, counts in series for s in counts))  # pipeline order
    legend_rows = (len(stages) + 2) // 3
    width, plot_h, left, top = 420, 180, 34, 12
    height = top + plot_h + 24 + 20 * legend_rows
    base = top + plot_h
    peak = max(max(c.values(), default=0) for _, c in series) or 1
    x_step = (width - left - 20) / (len(series) - 1)
    first, last = series[0][0], series[-1][0]
    body = [
        f'<line x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#999"/>',
        f'<text x="4" y="{top + 10}">{peak}</text>',
        f'<text x="{left}" y="{base + 16}">{first.day} {first:%b %Y}</text>',
        f'<text x="{width - 10}" y="{base + 16}" text-anchor="end">{last.day} {last:%b %Y}</text>',
    ]
    for i, stage in enumerate(stages):
        points = " ".join(
            f"{left + j * x_step:.1f},{base - plot_h * counts.get(stage, 0) / peak:.1f}"
            for j, (_, counts) in enumerate(series)
        )
        color, dash = stage_style(i)
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        x, y = left + (i % 3) * 125, base + 38 + 20 * (i // 3)
        body += [
            f'<polyline fill="none" stroke="{color}" stroke-width="2.5"{dashed} '
            f'points="{points}"/>',
            f'<line x1="{x}" y1="{y - 5}" x2="{x + 18}" y2="{y - 5}" stroke="{color}" '
            f'stroke-width="3"{dashed}/>',
            f'<text x="{x + 22}" y="{y}">{escape(stage)}</text>',
        ]
    svg = (
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Pipeline over time">'
        f"{''.join(body)}</svg>"
    )
    return ["<h2>Pipeline over time</h2>", svg]


def stage_style(index: int) -> tuple[str, str]:
    """The colour and dash pattern of the ``index``-th stage's line: no two the same."""
    return PALETTE[index % len(PALETTE)], DASHES[index // len(PALETTE) % len(DASHES)]
