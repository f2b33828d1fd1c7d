"""Sync and async clients against a real server process."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from support.procs import engine, free_port, server

pytest.importorskip("httpx")

from contextpilot.server import ContextPilotIndexClient as FromPackage  # noqa: E402
from contextpilot.server.http_client import (  # noqa: E402
    AsyncContextPilotIndexClient,
    ContextPilotAuthError,
    ContextPilotConnectionError,
    ContextPilotHTTPError,
    ContextPilotIndexClient,
    ContextPilotValidationError,
)


@pytest.fixture(scope="module")
def urls():
    with engine() as e, server(e.url, "--api-key", "k") as s:
        yield s.url, e.url


def test_package_level_import_is_the_client():
    assert FromPackage is ContextPilotIndexClient


def test_sync_client_round_trip(urls):
    url, _ = urls
    with ContextPilotIndexClient(url, api_key="k") as c:
        c.reset()
        contexts = [[1, 2, 3], [3, 2, 9], [1, 2, 3, 4]]
        reordered, order = c.reorder(contexts)
        for j, i in enumerate(order):
            assert Counter(reordered[j]) == Counter(contexts[i])
        raw = c.reorder_raw([[1, 2, 3, 5]])
        assert (
            raw["mode"] == "incremental" and raw["reordered_contexts"][0][:3] == reordered[order.index(0)][:3]
        )
        ev = c.evict([raw["request_ids"][0], "req-unknown"])
        assert ev["removed_count"] == 1 and ev["not_found"] == ["req-unknown"]
        d = c.deduplicate([["a", "b"], ["b"]], "conv")
        assert d["total_blocks_deduped"] == 1
        assert c.sessions()["count"] == 1 and c.delete_session("conv")["status"] == "success"
        assert c.warm(["hot prefix"])["succeeded"] == [0]
        assert c.stats()["index_stats"]["live_requests"] >= 3 and c.health()["status"] == "ready"
        assert c.is_ready() and c.requests()["num_requests"] >= 3
        assert c.schedule([[1, 2], [2, 1]])["mode"] == "stateless"
        with pytest.raises(ContextPilotValidationError) as e:
            c.reorder([[1, 2.5]])
        assert e.value.status == 422 and e.value.detail[0]["loc"][:4] == ["body", "contexts", 0, 1]
        with pytest.raises(ContextPilotHTTPError) as e:
            c.delete_session("nope")
        assert e.value.status == 404
        with pytest.raises(ValueError):
            c.evict("req-a")


def test_sync_client_errors(urls):
    url, _ = urls
    with ContextPilotIndexClient(url) as c, pytest.raises(ContextPilotAuthError):
        c.stats()
    with ContextPilotIndexClient(f"http://127.0.0.1:{free_port()}", timeout=2) as dead:
        with pytest.raises(ContextPilotConnectionError):
            dead.reorder([[1]])
        assert dead.is_ready() is False


def test_async_client_round_trip(urls):
    url, _ = urls

    async def run():
        async with AsyncContextPilotIndexClient(url, api_key="k") as c:
            await c.reset()
            results = await asyncio.gather(*(c.reorder([[i, i + 1], [i + 1, i + 2]]) for i in range(8)))
            assert all(sorted(order) == [0, 1] for _, order in results)
            stats = await c.stats()
            assert stats["index_stats"]["live_requests"] == 16
            ev = await c.evict(["chatcmpl-req-nothing"])
            assert ev["normalized_request_ids"] == ["req-nothing"]
            d = await c.deduplicate([["x"]], "c2")
            assert d["conversation_id"] == "c2"
            assert (await c.health())["engine"]["reachable"] is True and await c.is_ready()
            with pytest.raises(ContextPilotValidationError):
                await c.reorder([])
        async with AsyncContextPilotIndexClient(f"http://127.0.0.1:{free_port()}", timeout=2) as dead:
            with pytest.raises(ContextPilotConnectionError):
                await dead.stats()

    asyncio.run(run())


def test_client_dedup_by_parent_request_ids(urls):
    url, _ = urls
    with ContextPilotIndexClient(url, api_key="k") as c:
        first = c.deduplicate([["q1", "q2"]], parent_request_ids=[None])
        rid = first["request_ids"][0]
        # the 0.5.0 positional form: a list in second place is parent_request_ids
        second = c.deduplicate([["q2", "q3"]], [rid])
        assert second["results"][0]["overlapping_docs"] == ["q2"]
        with pytest.raises(ValueError):
            c.deduplicate([["q1"]])
