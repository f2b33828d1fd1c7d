"""Concurrent callers on one instance: no lost updates, index stays sound."""

from __future__ import annotations

import random
import threading
from collections import Counter

from contextpilot import ContextPilot


def test_threads_share_one_pilot_safely():
    pilot = ContextPilot(capacity_tokens=5000, token_counter=lambda b: 10 + b % 7)
    errors: list[BaseException] = []
    ids: list[str] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for _ in range(150):
                op = rnd.random()
                if op < 0.7:
                    ctxs = [rnd.sample(range(60), rnd.randint(1, 8)) for _ in range(rnd.randint(1, 4))]
                    r = pilot.reorder_detailed(ctxs)
                    for j, i in enumerate(r.order):
                        assert Counter(r.reordered[j]) == Counter(ctxs[i])
                    with lock:
                        ids.extend(r.request_ids)
                elif op < 0.9:
                    with lock:
                        pick = rnd.sample(ids, min(3, len(ids)))
                    pilot.evict(pick)
                else:
                    pilot.deduplicate([[rnd.randrange(20)]], f"conv-{seed}")
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    assert not errors, errors[0]
    pilot.index.check()
    assert pilot.stats()["requests_planned"] > 0
