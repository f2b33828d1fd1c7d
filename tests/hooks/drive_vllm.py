"""Drive vLLM v1's real KV cache manager and BlockPool on CPU until they
evict (run with the vLLM venv's python; see tests/hooks/test_engine_hooks.py).

    python drive_vllm.py SPECS.json  ->  one JSON result line per spec

SPECS: {"runs": [SPEC, ...]}; SPEC: {"block_size": int, "num_blocks": int, "requests": [{"rid": str,
       "tokens": [int]}], "reset_at_end": bool}

Each request takes the scheduler's path: an ``EngineCoreRequest`` whose id
gets vLLM's random suffix (``InputProcessor.assign_request_id``), a
``Request`` hashing its blocks (sha256 block hasher), prefix lookup
(``get_computed_blocks``), ``allocate_slots`` (which takes free blocks,
evicting cached ones LRU-first, and caches the full ones), then ``free``.
Nothing here knows about contextpilot: the hooks come in through the
``.pth`` when CONTEXTPILOT_INDEX_URL is set. The result says, from the pool
itself, which requests have no block hash cached any more.
"""

from __future__ import annotations

import json
import os
import sys
import time


def run_one(spec: dict) -> dict:
    t0 = time.perf_counter()
    import torch
    from vllm.sampling_params import SamplingParams
    from vllm.utils.hashing import get_hash_fn_by_name
    from vllm.v1.core.kv_cache_manager import KVCacheManager
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vllm.v1.engine import EngineCoreRequest
    from vllm.v1.engine.input_processor import InputProcessor
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.request import Request

    import_s = time.perf_counter() - t0
    bs = spec["block_size"]
    hash_fn = get_hash_fn_by_name("sha256")
    init_none_hash(hash_fn)
    hasher = get_request_block_hasher(bs, hash_fn)
    config = KVCacheConfig(
        num_blocks=spec["num_blocks"],
        kv_cache_tensors=[],
        kv_cache_groups=[
            KVCacheGroupSpec(
                ["layer.0"],
                FullAttentionSpec(block_size=bs, num_kv_heads=1, head_size=8, dtype=torch.float16),
            )
        ],
    )
    max_len = max(len(r["tokens"]) for r in spec["requests"]) + bs
    mgr = KVCacheManager(
        config, max_model_len=max_len, scheduler_block_size=bs, hash_block_size=bs, enable_caching=True
    )
    pool = mgr.block_pool
    hooked = "_contextpilot_requests" in pool.__dict__ or type(pool)._maybe_evict_cached_block.__dict__.get(
        "__contextpilot_hook__", False
    )

    requests = {}
    hits = {}
    for r in spec["requests"]:
        ecr = EngineCoreRequest(
            request_id=r["rid"],
            prompt_token_ids=list(r["tokens"]),
            mm_features=None,
            sampling_params=SamplingParams(max_tokens=1),
            pooling_params=None,
            arrival_time=time.time(),
            lora_request=None,
            cache_salt=None,
            data_parallel_rank=None,
        )
        InputProcessor.assign_request_id(ecr)  # "<rid>-<8 random chars>", as the engine does
        req = Request.from_engine_core_request(ecr, hasher)
        computed, n_computed, _ = mgr.get_computed_blocks(req)
        hits[r["rid"]] = n_computed
        blocks = mgr.allocate_slots(req, req.num_tokens - n_computed, n_computed, computed)
        if blocks is None:
            raise RuntimeError(f"no room for {r['rid']}")
        req.num_computed_tokens = req.num_tokens
        mgr.free(req)
        requests[r["rid"]] = req

    def cached_blocks(req: Request) -> int:
        return sum(pool.get_cached_block(h, [0]) is not None for h in req.block_hashes)

    truth = {rid: cached_blocks(req) for rid, req in requests.items()}
    evicted = sorted(rid for rid, n in truth.items() if n == 0)
    reset_ok = None
    if spec.get("reset_at_end"):
        reset_ok = mgr.reset_prefix_cache()
    stats = None
    if hooked:
        from contextpilot.hooks.notifier import get_notifier
        from contextpilot.hooks.vllm import pool_tracker

        notifier = get_notifier()
        stats = {"tracker": pool_tracker(pool).stats()}
        stats["delivered"] = notifier.flush(20) if notifier else False
        stats["notifier"] = notifier.stats() if notifier else None
    return {
        "hooked": bool(hooked),
        "import_s": round(import_s, 2),
        "engine_ids": {rid: req.request_id for rid, req in requests.items()},
        "prefix_hits": hits,
        "cached_blocks": truth,
        "evicted": evicted,
        "reset_ok": reset_ok,
        "hook": stats,
        "contextpilot_modules": sorted(m for m in sys.modules if m.startswith("contextpilot")),
        "env": bool(os.environ.get("CONTEXTPILOT_INDEX_URL")),
    }


def main(path: str) -> None:
    for spec in json.loads(open(path).read())["runs"]:
        print(json.dumps(run_one(spec), default=str), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
