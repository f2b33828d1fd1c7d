"""/metrics on prometheus_client, against a real server process and a real (simulated) engine."""

from __future__ import annotations

import re

import httpx
import pytest

from support.procs import engine, server

pytest.importorskip("prometheus_client")


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_count_what_happened_with_bounded_path_labels() -> None:
    with engine() as eng, server(eng.url) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        before = _samples(c.get("/metrics").text)
        assert c.post("/reorder", json={"contexts": [[1, 2], [1, 2, 3]]}).status_code == 200
        body = {"model": "m", "prompt": "hello there", "max_tokens": 1}
        assert c.post("/v1/completions", json=body).status_code == 200
        for junk in ("/no/such/path", "/another-one", "/sessions/abc"):
            c.get(junk)
        after = _samples(c.get("/metrics").text)
    key = 'contextpilot_http_requests_total{path="/reorder",status="2xx"}'
    assert after[key] - before.get(key, 0) == 1
    assert (
        after["contextpilot_planned_requests_total"] - before.get("contextpilot_planned_requests_total", 0)
        == 2
    )
    assert after['contextpilot_proxied_requests_total{endpoint="completions"}'] == 1
    assert after["contextpilot_index_requests"] == 3  # two planned, one proxied
    # paths: the app's own routes (templated ones by template), everything else "other"
    paths = {
        m.group(1) for m in re.finditer(r'contextpilot_http_requests_total\{path="([^"]+)"', "\n".join(after))
    }
    assert paths <= {"/health", "/reorder", "/v1/completions", "/metrics", "/sessions/{id}", "other"}
    assert 'contextpilot_http_requests_total{path="other",status="4xx"}' in after
    # the library's standard process metrics come for free
    assert any(name.startswith("process_cpu_seconds_total") for name in after)
