#!/usr/bin/env python3
"""Runs every query of infra/grafana-dashboard.json through Prometheus's HTTP API over a time range and
says, per panel, whether it shows data: at least one series with a sample, and a non-zero value unless
the panel is one that stays at zero in a healthy run. infra/demo.sh runs it after its scenario.

Usage: infra/dashboard-check.py --prometheus URL --since UNIX_SECONDS [--until UNIX_SECONDS]
Exit 0: every panel shows data; 1: some do not (listed); 2: Prometheus did not answer or a query failed.
"""
import argparse
import json
import math
import pathlib
import sys
import time
import urllib.error

from prom_query import query_range

# Panels whose every value is 0 in a healthy run: they must have series, not non-zero values.
ZERO_IN_A_HEALTHY_RUN = {"Consumers replaced", "Consumer lag per group"}
STEP_S = 5


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--since", type=float, required=True)
    ap.add_argument("--until", type=float, default=None)
    ap.add_argument(
        "--dashboard",
        default=str(pathlib.Path(__file__).with_name("grafana-dashboard.json")),
    )
    a = ap.parse_args()
    until = a.until or time.time()
    panels = json.loads(pathlib.Path(a.dashboard).read_text())["panels"]
    missing = []
    print(f"{'panel':<58} {'series':>6} {'max':>12}  shows data")
    for p in panels:
        series, peak = 0, 0.0
        for t in p.get("targets", []):
            try:
                result = query_range(a.prometheus, t["expr"], a.since, until, STEP_S)
            except (urllib.error.URLError, RuntimeError, OSError) as e:
                print(f"query of panel {p['title']!r} failed: {e}", file=sys.stderr)
                return 2
            for s in result:
                values = [float(v) for _, v in s.get("values", [])]
                values = [v for v in values if not math.isnan(v)]
                if values:
                    series += 1
                    peak = max(peak, max(abs(v) for v in values))
        ok = series > 0 and (peak > 0 or p["title"] in ZERO_IN_A_HEALTHY_RUN)
        print(f"{p['title'][:58]:<58} {series:>6} {peak:>12.4g}  {'yes' if ok else 'NO'}")
        if not ok:
            missing.append(p["title"])
    if missing:
        print(f"panels without data: {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"every panel of {pathlib.Path(a.dashboard).name} shows data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
