"""Random interleavings of reorder / evict / reset keep the live index sound."""

from __future__ import annotations

from collections import Counter

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from contextpilot import ContextPilot

blocks = st.lists(st.integers(0, 15), min_size=1, max_size=6)


class LiveIndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pilot = ContextPilot(capacity_tokens=2000, token_counter=lambda b: 64 + b)
        self.ids: list[str] = []

    @rule(contexts=st.lists(blocks, min_size=1, max_size=5))
    def reorder(self, contexts):
        r = self.pilot.reorder_detailed(contexts)
        for j, i in enumerate(r.order):
            assert Counter(r.reordered[j]) == Counter(contexts[i])
        self.ids.extend(r.request_ids)

    @rule(data=st.data())
    def evict(self, data):
        if not self.ids:
            return
        pick = data.draw(st.lists(st.sampled_from(self.ids), max_size=4))
        rep = self.pilot.evict(pick)
        assert set(rep.removed) | set(rep.not_found) == set(pick)
        for rid in rep.removed:
            assert rid not in self.pilot.index

    @rule()
    def reset(self):
        self.pilot.reset()
        assert self.pilot.stats()["live_requests"] == 0

    @invariant()
    def consistent(self):
        self.pilot.index.check()


LiveIndexMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestLiveIndex = LiveIndexMachine.TestCase
