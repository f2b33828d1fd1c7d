"""The reorder contract, on fresh and live instances, and known regressions."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import contextpilot as cp
from contextpilot import ContextPilot

ints = st.lists(st.lists(st.integers(0, 30), min_size=1, max_size=8), min_size=1, max_size=12)
strs = st.lists(
    st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta", "", "ω", "a\nb"]), min_size=1, max_size=6),
    min_size=1,
    max_size=10,
)


def assert_contract(contexts, reordered, order):
    assert sorted(order) == list(range(len(contexts)))
    assert len(reordered) == len(contexts)
    for j, i in enumerate(order):
        assert Counter(reordered[j]) == Counter(contexts[i]), (i, contexts[i], reordered[j])


@settings(max_examples=150, deadline=None)
@given(st.one_of(ints, strs))
def test_fresh_reorder_is_a_permutation_of_each_input(contexts):
    reordered, order = ContextPilot().reorder(contexts)
    assert_contract(contexts, reordered, order)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ints, min_size=2, max_size=6))
def test_live_instance_keeps_contract_across_calls(batches):
    pilot = ContextPilot()
    for contexts in batches:
        reordered, order = pilot.reorder(contexts)
        assert_contract(contexts, reordered, order)
        for ctx in contexts[:3]:  # single requests too
            r, o = pilot.reorder([ctx])
            assert o == [0] and Counter(r[0]) == Counter(ctx)
        pilot.index.check()


def test_second_call_pairs_contexts_with_their_order():
    """Regression: the reference returned input order with a permuted
    ``original_indices`` from the second call on."""
    pilot = ContextPilot()
    first = [[1, 2, 3], [7, 8, 9], [1, 2, 4]]
    pilot.reorder(first)
    second = [[7, 8, 10], [1, 2, 5], [20, 21], [1, 2, 3, 6]]
    reordered, order = pilot.reorder(second)
    # the case must permute, or pairing each context with its order entry checks nothing
    assert order != sorted(order), order
    assert_contract(second, reordered, order)


def test_duplicates_inside_a_context_are_kept():
    reordered, order = ContextPilot().reorder([["a", "a", "b"], ["b", "a", "c", "a"]])
    assert_contract([["a", "a", "b"], ["b", "a", "c", "a"]], reordered, order)


def test_thousand_children_do_not_break_search():
    pilot = ContextPilot()
    for i in range(1500):
        pilot.reorder([[i, 10_000 + i]])
    reordered, order = pilot.reorder([[5, 10_005, 3], [1499, 11_499]])
    assert_contract([[5, 10_005, 3], [1499, 11_499]], reordered, order)
    assert reordered[order.index(0)][:2] == [5, 10_005]  # the cached path comes first


@pytest.mark.parametrize(
    "contexts, where",
    [
        ([[], ["a"]], "contexts[0]"),
        ([["a"], [1]], "contexts[1][0]"),
        ([[1, None]], "contexts[0][1]"),
        ([[1, 2.5]], "contexts[0][1]"),
    ],
)
def test_bad_input_raises_value_error_and_leaves_state_intact(contexts, where):
    pilot = ContextPilot()
    pilot.reorder([[1, 2, 3]])
    before = pilot.stats()
    with pytest.raises(ValueError, match=where.replace("[", r"\[").replace("]", r"\]")):
        pilot.reorder(contexts)
    assert pilot.stats() == before
    pilot.index.check()


def test_cached_blocks_come_first_in_cached_order():
    pilot = ContextPilot()
    pilot.reorder([[5, 6, 7, 8]])
    (r,), _ = pilot.reorder([[9, 8, 6, 5, 7]])
    assert r[:4] == [5, 6, 7, 8]


def test_stateless_mode_leaves_no_state():
    pilot = ContextPilot(stateless=True)
    r = pilot.reorder_detailed([[1, 2], [2, 3]])
    assert r.mode == "stateless" and r.request_ids == []
    assert pilot.stats()["live_requests"] == 0


def test_modes_and_request_ids():
    pilot = ContextPilot()
    r1 = pilot.reorder_detailed([[1, 2], [2, 3]])
    r2 = pilot.reorder_detailed([[2, 3, 4]])
    assert (r1.mode, r2.mode) == ("initial", "incremental")
    ids = r1.request_ids + r2.request_ids
    assert len(set(ids)) == 3 and all(i.startswith("req-") for i in ids)
    assert r2.cached_tokens[0] > 0  # blocks 2 and 3 were sent before
    rep = pilot.evict([f"chatcmpl-{ids[0]}", "HEALTH_CHECK_1", "req-unknown"])
    assert rep.removed == [ids[0]] and rep.not_found == ["req-unknown"]
    pilot.index.check()


def test_legacy_constructor_options_accepted_and_unknown_rejected():
    ContextPilot(alpha=0.001, use_gpu=False, linkage_method="average", batch_size=10)
    with pytest.raises(TypeError):
        ContextPilot(bogus=1)


def test_optimize_batch_pairs_messages_with_queries():
    docs = [["d1", "d2", "d3"], ["d9", "d8"], ["d2", "d3", "d4"]]
    queries = ["q0", "q1", "q2"]
    messages, order = ContextPilot().optimize_batch(docs, queries)
    for j, i in enumerate(order):
        assert messages[j][-1]["content"].endswith(queries[i])
        for d in docs[i]:
            assert f"\n{d}" in messages[j][0]["content"]
    with pytest.raises(ValueError):
        ContextPilot().optimize_batch(docs, queries[:2])


def test_module_level_functions():
    cp.reset()
    msgs = cp.optimize(["x doc", "y doc"], "why?")
    assert msgs[0]["role"] == "system" and msgs[1]["content"].endswith("why?")
    batch, order = cp.optimize_batch([["a"], ["b"]], ["qa", "qb"])
    assert sorted(order) == [0, 1] and len(batch) == 2
