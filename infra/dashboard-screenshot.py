#!/usr/bin/env python3
"""Draws the dashboard's panels from Prometheus's data and saves them as a PNG with headless Chromium
(Debian's `chromium` package): the README's picture of infra/grafana-dashboard.json, from a real run.
Every panel's queries are run over the time range (`/api/v1/query_range`), drawn as SVG lines in an
HTML page, and the page is rendered.

Usage: infra/dashboard-screenshot.py --prometheus URL --out FILE.png [--minutes 5]
Run it while Prometheus still holds a run's data, e.g. after `infra/start.sh --with-prometheus &&
infra/demo.sh` (brokers started first, so the demo leaves them, and Prometheus, running).
"""
import argparse
import html
import json
import math
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

from prom_query import query_range

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
W, H = 560, 190


def legend(fmt, metric):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt or "") or str(metric)


def svg(lines, start, end):
    values = [v for _, pts in lines for _, v in pts]
    top = max(values) if values else 1.0
    top = top if top > 0 else 1.0
    out = [f'<svg width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">',
           f'<rect x="40" y="5" width="{W - 45}" height="{H - 25}" fill="#fafafa" stroke="#ccc"/>',
           f'<text x="2" y="14" font-size="10">{top:.3g}</text>',
           f'<text x="2" y="{H - 20}" font-size="10">0</text>',
           f'<text x="40" y="{H - 5}" font-size="10">-{(end - start) / 60:.0f} min</text>',
           f'<text x="{W - 30}" y="{H - 5}" font-size="10">now</text>']
    for i, (_, pts) in enumerate(lines):
        xy = " ".join(
            f"{40 + (t - start) / (end - start) * (W - 45):.1f},{5 + (1 - v / top) * (H - 25):.1f}"
            for t, v in pts
        )
        out.append(f'<polyline fill="none" stroke="{COLOURS[i % len(COLOURS)]}" stroke-width="1.5" points="{xy}"/>')
    out.append("</svg>")
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument(
        "--dashboard",
        default=str(pathlib.Path(__file__).with_name("grafana-dashboard.json")),
    )
    a = ap.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium is missing (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    dash = json.loads(pathlib.Path(a.dashboard).read_text())
    end = time.time()
    start = end - a.minutes * 60
    step = max(2, int(a.minutes * 60 / 150))
    cells = []
    for p in dash["panels"]:
        lines = []
        for t in p.get("targets", []):
            for s in query_range(a.prometheus, t["expr"], start, end, step):
                pts = [(float(ts), float(v)) for ts, v in s["values"] if not math.isnan(float(v))]
                if pts:
                    lines.append((legend(t.get("legendFormat"), s["metric"]), pts))
        lines = lines[: len(COLOURS)]
        keys = "".join(
            f'<span style="color:{COLOURS[i % len(COLOURS)]}">&#9632; {html.escape(name)} '
            f"({pts[-1][1]:.3g})</span> "
            for i, (name, pts) in enumerate(lines)
        )
        cells.append(
            f'<div class="p"><div class="t">{html.escape(p["title"])}</div>'
            f"{svg(lines, start, end)}<div class=\"k\">{keys or 'no data'}</div></div>"
        )
    page = (
        "<html><head><style>body{font-family:sans-serif;margin:8px;background:#fff}"
        ".g{display:grid;grid-template-columns:repeat(2,580px);gap:8px}"
        ".p{border:1px solid #ddd;padding:6px}.t{font-weight:bold;font-size:13px;margin-bottom:4px}"
        ".k{font-size:10px;height:28px;overflow:hidden}</style></head><body>"
        f"<div class=\"t\">{html.escape(dash['title'])}: the last {a.minutes:g} minutes, "
        f"from {html.escape(a.prometheus)}</div><div class=\"g\">{''.join(cells)}</div></body></html>"
    )
    out = pathlib.Path(a.out).resolve()
    rows = (len(cells) + 1) // 2
    with tempfile.TemporaryDirectory() as d:
        page_file = pathlib.Path(d) / "dashboard.html"
        page_file.write_text(page)
        cmd = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--window-size=1190,{rows * 262 + 40}", f"--screenshot={out}", page_file.as_uri(),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or not out.exists():
        print(f"chromium failed ({r.returncode}): {r.stderr[-2000:]}", file=sys.stderr)
        return 1
    print(f"{out}: {len(cells)} panels of {pathlib.Path(a.dashboard).name} over the last {a.minutes:g} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
