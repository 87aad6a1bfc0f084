"""Prometheus's range-query API for the dashboard scripts (dashboard-check.py, dashboard-screenshot.py)."""
import json
import urllib.parse
import urllib.request


def query_range(base, expr, start, end, step):
    """The series of `expr` between `start` and `end` (Unix seconds) every `step` s; a failed
    query raises RuntimeError with Prometheus's message."""
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{q}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body.get('error', body)}")
    return body["data"]["result"]
