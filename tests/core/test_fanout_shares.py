"""A routed batch is validated in one walk, clustered once, and each
replica's share is laid out against that replica's own live index."""

from __future__ import annotations

from collections import Counter

import pytest

import contextpilot.core.clustered as clustered_mod
import contextpilot.core.planner as planner_mod
from contextpilot import ContextPilot
from contextpilot.core.blocks import BlockTable
from contextpilot.core.clustered import cluster_once, tree_leaves
from contextpilot.core.fanout import BatchView, reorder_over
from contextpilot.core.planner import plan
from contextpilot.core.validation import ContextLimits, LimitError, validate_contexts


class CountingList(list):
    """A list that counts how often it is walked."""

    walks = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        type(self).walks += 1
        return super().__iter__()


def topics(n_topics: int, per: int, width: int = 6) -> list[list[int]]:
    """``per`` contexts per topic, each the topic's ``width`` ids plus one of its own."""
    out = []
    for t in range(n_topics):
        base = [1000 * t + j for j in range(width)]
        out += [base[i:] + base[:i] + [1000 * t + 500 + i] for i in range(per)]
    return out


def by_groups(batch: BatchView) -> dict[int, list[int]]:
    """Topic groups alternate over two pilots (whole groups, as the router places them)."""
    parts: dict[int, list[int]] = {}
    for g, members in enumerate(batch.groups()):
        parts.setdefault(g % 2, []).extend(members)
    return parts


def test_one_walk_one_clustering_and_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    for mod in (clustered_mod, planner_mod):
        real = mod.build_forest

        def counted(sets, *a, _real=real, _name=mod.__name__, **k):  # type: ignore[no-untyped-def]
            calls.append((_name, len(sets)))
            return _real(sets, *a, **k)

        monkeypatch.setattr(mod, "build_forest", counted)
    pilots = [ContextPilot(), ContextPilot(), ContextPilot()]
    contexts = topics(4, 5)
    CountingList.walks = 0
    out = reorder_over(pilots, CountingList(contexts), place=by_groups)
    assert CountingList.walks == 1  # validated (limits included) in one walk, never walked again
    # one forest of the batch (no tree reaches REFINE_MIN requests: none refined); no plan per replica
    assert calls == [(clustered_mod.__name__, len(contexts))]
    r = out.result
    assert sorted(r.order) == list(range(len(contexts)))
    for j, i in enumerate(r.order):
        assert Counter(r.reordered[j]) == Counter(contexts[i])
    assert sorted(i for g in r.groups for i in g) == list(range(len(contexts)))
    assert set(out.placed) == {0, 1} and len(pilots[2].index) == 0
    assert all(rid in pilots[p].index for rid, p in zip(r.request_ids, out.placed))
    # the groups are the planner's own (same forest): same partition as plan()
    ref = plan(validate_contexts(contexts), table=BlockTable())
    assert sorted(map(sorted, r.groups)) == sorted(map(sorted, ref.groups))


def test_each_share_follows_its_own_replicas_cache() -> None:
    contexts = topics(2, 4)
    cold, warm = ContextPilot(), ContextPilot()
    view = BatchView(validate_contexts(contexts), cold)
    groups = view.groups()
    assert len(groups) == 2
    # warm's engine holds topic 0's shared blocks, in an order of its own
    shared = sorted(set.intersection(*(set(contexts[i]) for i in groups[0])), reverse=True)
    warm.record(shared)

    def place(batch: BatchView) -> dict[int, list[int]]:
        g = batch.groups()
        return {0: g[1], 1: g[0]}

    out = reorder_over([cold, warm], contexts, place=place)
    r = out.result
    on_warm = [j for j, p in enumerate(out.placed) if p == 1]
    assert on_warm and all(r.reordered[j][: len(shared)] == shared for j in on_warm)
    assert sum(r.cached_tokens[j] for j in on_warm) >= len(on_warm) * len(shared) * 64
    # the cold replica's share still shares its topic's prefix, in the caller's order
    on_cold = [j for j, p in enumerate(out.placed) if p == 0]
    assert on_cold and len({tuple(r.reordered[j][:6]) for j in on_cold}) == 1


def test_a_share_that_splits_a_tree_is_laid_out_along_its_restriction() -> None:
    contexts = topics(1, 6)
    c = cluster_once(validate_contexts(contexts), BlockTable())
    (group,) = c.groups
    half = group[::2]
    share = c.lay_out(half)
    assert sorted(share.order) == sorted(half) and sorted(i for g in share.groups for i in g) == sorted(half)
    for j, i in enumerate(share.order):
        assert Counter(share.contexts[j]) == Counter(contexts[i])
    # members share the topic's blocks: laid out, they all start with the same prefix
    heads = {tuple(ctx[:6]) for ctx in share.contexts}
    assert len(heads) == 1
    pilots = [ContextPilot(), ContextPilot()]
    out = reorder_over(pilots, contexts, place=lambda b: {0: group[::2], 1: group[1::2]})
    assert sorted(out.result.order) == list(range(6)) and len(pilots[0].index) == len(pilots[1].index) == 3


def test_single_replica_is_the_plain_plan() -> None:
    contexts = topics(3, 4)
    a, b = ContextPilot(), ContextPilot()
    out = reorder_over([a], contexts)
    ref = b.reorder_detailed(contexts)
    assert out.result.reordered == ref.reordered and out.result.order == ref.order
    assert out.result.groups == ref.groups and out.result.cached_tokens == ref.cached_tokens
    assert len(out.result.request_ids) == len(contexts) and all(out.result.request_ids)
    # the index learned the same batch (recorded in bulk, as reorder_detailed does): a second,
    # overlapping batch is planned alike and finds the same cached tokens
    again = topics(3, 4, width=7)[::-1]
    out2, ref2 = reorder_over([a], again), b.reorder_detailed(again)
    assert out2.result.reordered == ref2.reordered and out2.result.order == ref2.order
    assert out2.result.cached_tokens == ref2.cached_tokens and sum(ref2.cached_tokens) > 0
    assert out2.result.mode == ref2.mode == "incremental"


@pytest.mark.parametrize(
    "contexts, limit, path",
    [
        ([[1]] * 4, "max_contexts", ()),
        ([[1], [1, 2, 3, 4]], "max_blocks_per_context", (1,)),
        ([["ok"], ["a", "x" * 11]], "max_block_chars", (1, 1)),
        ([["ok"], ["a", 3, "x" * 11]], "mixed", (1, 1)),
    ],
)
def test_limits_are_checked_in_the_validation_walk(contexts, limit, path) -> None:  # type: ignore[no-untyped-def]
    limits = ContextLimits(max_contexts=3, max_blocks_per_context=3, max_block_chars=10)
    pilot = ContextPilot()
    with pytest.raises(ValueError) as e:
        reorder_over([pilot], contexts, limits=limits)
    assert getattr(e.value, "path", None) == path
    if limit != "mixed":
        assert isinstance(e.value, LimitError) and e.value.limit == limit
    assert len(pilot.index) == 0 and pilot.stats()["calls"] == 0
    # generators are counted as they are walked
    with pytest.raises(LimitError):
        validate_contexts(iter([[1]] * 4), limits=limits)
    assert validate_contexts([["x" * 10] * 3] * 3, limits=limits)


@pytest.mark.parametrize(("refine_min", "trees"), [(3, 5), (7, 5), (8, 1), (10, 0), (0, 0)])
def test_refined_forest_keeps_the_groups_and_the_forest_invariants(refine_min, trees) -> None:  # type: ignore[no-untyped-def]
    contexts = topics(5, 7) + [[1, 2], [2, 3], [77777]]
    c = cluster_once(validate_contexts(contexts), BlockTable(), refine_min=refine_min)
    assert (
        c.timings["refined"] == trees
    )  # trees of 7, 7, 7, 7 and 9 requests (topic 0 with [1, 2] and [2, 3])
    f = c.forest
    assert sorted(i for g in c.groups for i in g) == list(range(len(contexts)))
    for t, g in enumerate(c.groups):
        below = [i for r in c.tree_roots[t] for i in tree_leaves(f, r)]
        assert sorted(below) == sorted(g) and all(c.tree_of[i] == t for i in g)
    assert sorted(r for rs in c.tree_roots for r in rs) == sorted(f.roots)
    for j, (a, b) in enumerate(zip(f.left, f.right)):
        v = f.n_leaves + j
        assert a < v and b < v
        leaves = tree_leaves(f, v)
        assert f.inter[v] == frozenset.intersection(*(frozenset(c.rows[i]) for i in leaves))


def test_refine_min_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="refine_min"):
        cluster_once([[1, 2], [1, 3]], BlockTable(), refine_min=-1)


def test_mixed_stateless_and_stateful_shares_keep_ids_aligned() -> None:
    # a stateless replica's share records nothing: its places hold "" and 0, so the
    # ids of the stateful share still line up with its contexts
    contexts = topics(4, 3)
    pilots = [ContextPilot(stateless=True), ContextPilot()]
    convs = [f"c{i}" for i in range(len(contexts))]
    out = reorder_over(pilots, contexts, place=by_groups, conversations=convs)
    r = out.result
    assert len(r.request_ids) == len(r.cached_tokens) == len(r.reordered) == len(out.placed)
    assert out.dedup is not None and len(out.dedup) == len(r.reordered)
    assert set(out.placed) == {0, 1}
    for j, p in enumerate(out.placed):
        if p == 0:
            assert r.request_ids[j] == "" and r.cached_tokens[j] == 0 and out.dedup[j].request_id is None
        else:
            rid = r.request_ids[j]
            assert rid in pilots[1].index and out.dedup[j].request_id == rid
            keys, tokens = pilots[1].measure(r.reordered[j])
            assert pilots[1].index.match(keys) == sum(tokens)  # its context is what was recorded
    stateful = [rid for rid in r.request_ids if rid]
    assert len(set(stateful)) == len(stateful) == len(pilots[1].index)
