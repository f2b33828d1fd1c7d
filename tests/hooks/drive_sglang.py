"""Drive SGLang's real radix caches on CPU until they evict (run with the
SGLang venv's python; see tests/hooks/test_engine_hooks.py).

    python drive_sglang.py SPECS.json  ->  one JSON result line per spec

SPECS: {"runs": [SPEC, ...]}; SPEC: {"variant": "radix"|"unified-rust"|"unified-python", "page_size": int,
       "kv_size": int, "requests": [{"rid": str, "tokens": [int]}],
       "reset_at_end": bool}

Each request goes the way the scheduler takes it: ``Req``, match against
the tree (``init_next_round_input``), tree lock, row + KV slots (evicting
through the allocator's ``evict_to_free_tokens`` when short, which calls
``evict_for_alloc``), then ``release_kv_cache(checkpoint=True)``, which
checkpoints the tokens into the tree. Nothing here knows about
contextpilot: the hooks come in through the ``.pth`` when
CONTEXTPILOT_INDEX_URL is set. The result says, from the cache itself
(``match_prefix``), which requests have no token cached any more.
"""

from __future__ import annotations

import enum
import json
import os
import sys
import time
import types


def _stub_torchvision() -> None:
    # shared/notes/engines.md: two config modules import torchvision unconditionally; the
    # CPU torch wheel has no matching torchvision. Let transformers cache "unavailable"
    # first, then provide the three names those modules touch.
    from transformers.utils import import_utils

    import_utils.is_torchvision_available()

    class InterpolationMode(enum.Enum):
        NEAREST = "nearest"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"
        BOX = "box"
        HAMMING = "hamming"
        LANCZOS = "lanczos"

    tv = types.ModuleType("torchvision")
    tr = types.ModuleType("torchvision.transforms")
    fn = types.ModuleType("torchvision.transforms.functional")
    fn.InterpolationMode = tr.InterpolationMode = InterpolationMode
    tr.functional, tv.transforms = fn, tr
    sys.modules.update(
        {"torchvision": tv, "torchvision.transforms": tr, "torchvision.transforms.functional": fn}
    )


def run_one(spec: dict) -> dict:
    t0 = time.perf_counter()
    _stub_torchvision()
    from array import array

    import torch
    from sglang.srt.managers.schedule_batch import FINISH_LENGTH, Req
    from sglang.srt.mem_cache.allocator import TokenToKVPoolAllocator
    from sglang.srt.mem_cache.base_prefix_cache import MatchPrefixParams
    from sglang.srt.mem_cache.cache_init_params import CacheInitParams
    from sglang.srt.mem_cache.common import evict_from_tree_cache, release_kv_cache
    from sglang.srt.mem_cache.memory_pool import ReqToTokenPool
    from sglang.srt.mem_cache.radix_cache import RadixCache, RadixKey
    from sglang.srt.mem_cache.unified_cache.component_type import ComponentType
    from sglang.srt.mem_cache.unified_radix_cache import UnifiedRadixCache
    from sglang.srt.sampling.sampling_params import SamplingParams
    from sglang.srt.server_args import ServerArgs, set_global_server_args_for_scheduler

    import_s = time.perf_counter() - t0
    page_size = spec["page_size"]
    set_global_server_args_for_scheduler(ServerArgs(model_path="dummy", page_size=page_size))
    max_len = max(len(r["tokens"]) for r in spec["requests"]) + 8
    req_pool = ReqToTokenPool(size=8, max_context_len=max_len, device="cpu", enable_memory_saver=False)
    if page_size == 1:
        allocator = TokenToKVPoolAllocator(
            size=spec["kv_size"], dtype=torch.float16, device="cpu", kvcache=None, need_sort=False
        )
    else:
        from sglang.srt.mem_cache.allocator import PagedTokenToKVPoolAllocator

        allocator = PagedTokenToKVPoolAllocator(
            size=spec["kv_size"],
            page_size=page_size,
            dtype=torch.float16,
            device="cpu",
            kvcache=None,
            need_sort=False,
        )
    variant = spec["variant"]
    common = dict(
        disable=False, req_to_token_pool=req_pool, token_to_kv_pool_allocator=allocator, page_size=page_size
    )
    if variant == "radix":
        cache = RadixCache(CacheInitParams(**common))
    else:
        core = variant.split("-", 1)[1]
        cache = UnifiedRadixCache(
            CacheInitParams(**common, tree_components=(ComponentType.FULL,), tree_core_backend=core)
        )
    hooked = "_contextpilot_sync" in cache.__dict__

    def run(rid: str, tokens: list[int]) -> int:
        req = Req(
            rid=rid,
            origin_input_text="",
            origin_input_ids=array("q", tokens),
            sampling_params=SamplingParams(temperature=0, max_new_tokens=1),
        )
        req.output_ids = array("q")
        req.init_next_round_input(cache)  # match the cached prefix
        req.lock = cache.lock(req.last_node)
        req_pool.alloc([req])
        prefix = cache.prefix_device_indices(req)
        need = len(tokens) - len(prefix)
        evict_from_tree_cache(cache, need)  # the allocator's eviction path
        if page_size == 1:
            fresh = allocator.alloc(need)
        else:
            last = prefix[-1:] if len(prefix) else torch.tensor([-1], dtype=torch.int64)
            fresh = allocator.alloc_extend(
                prefix_lens=torch.tensor([len(prefix)]),
                prefix_lens_cpu=torch.tensor([len(prefix)]),
                seq_lens=torch.tensor([len(tokens)]),
                seq_lens_cpu=torch.tensor([len(tokens)]),
                last_loc=last,
                extend_num_tokens=need,
            )
        if fresh is None:
            raise RuntimeError(f"out of KV slots for {rid} ({need} tokens)")
        row = torch.cat([prefix.to(torch.int64), fresh.to(torch.int64)])
        req_pool.write((req.kv.req_pool_idx, slice(0, len(tokens))), row)
        req.kv.kv_committed_len = req.kv.kv_allocated_len = len(tokens)
        req.finished_reason = FINISH_LENGTH(length=0)
        release_kv_cache(req, cache, checkpoint=True)
        return int(req.prefix_len)

    hits = {}
    for r in spec["requests"]:
        hits[r["rid"]] = run(r["rid"], r["tokens"])

    def cached_len(tokens: list[int]) -> int:
        m = cache.match_prefix(MatchPrefixParams(key=RadixKey(array("q", tokens))))
        return int(m.device_prefix_len)

    # ground truth from the cache itself, after all the evictions
    truth_cached = {r["rid"]: cached_len(r["tokens"]) for r in spec["requests"]}
    evicted_before_reset = sorted(rid for rid, n in truth_cached.items() if n == 0)
    if spec.get("reset_at_end"):
        cache.reset()
    stats = None
    if hooked:
        from contextpilot.hooks.notifier import get_notifier

        stats = cache.__dict__["_contextpilot_sync"].stats()
        notifier = get_notifier()
        delivered = notifier.flush(20) if notifier else False
        stats["notifier"] = notifier.stats() if notifier else None
        stats["delivered"] = delivered
    out = {
        "variant": variant,
        "cache_class": type(cache).__name__,
        "tree_core": type(getattr(cache, "tree_core", None)).__name__,
        "hooked": hooked,
        "import_s": round(import_s, 2),
        "prefix_hits": hits,
        "cached_tokens": truth_cached,
        "evicted": evicted_before_reset,
        "hook": stats,
        "contextpilot_modules": sorted(m for m in sys.modules if m.startswith("contextpilot")),
        "env": bool(os.environ.get("CONTEXTPILOT_INDEX_URL")),
    }
    return out


def main(path: str) -> None:
    for spec in json.loads(open(path).read())["runs"]:
        print(json.dumps(run_one(spec), default=str), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
