"""core.gcpause: the collector is off inside, restored after (outermost
only), and long-lived objects land in the oldest generation."""

from __future__ import annotations

import gc

from contextpilot.core.gcpause import gc_paused


class _Obj:
    pass


def _in_generation(obj: object, gen: int) -> bool:
    return any(o is obj for o in gc.get_objects(generation=gen))


def test_paused_inside_restored_after_and_nesting_keeps_it_off():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused(long_lived=True):
            assert not gc.isenabled()
        assert not gc.isenabled()  # only the outermost turns it back on
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: stays off
    finally:
        gc.enable()


def test_long_lived_objects_go_to_the_oldest_generation():
    with gc_paused(long_lived=True):
        kept = [_Obj() for _ in range(3)]
    assert _in_generation(kept[0], 2)
    with gc_paused():
        young = _Obj()
    assert not _in_generation(young, 2)  # the plain pause leaves them young


def test_objects_the_caller_froze_stay_frozen():
    # the caller's own frozen object must stay in the permanent generation (an unfreeze would
    # move it back to generation 2); the freeze count itself can drop while the block runs, as
    # other frozen objects die, so it is not what is checked
    mine = _Obj()
    gc.freeze()
    try:
        assert gc.get_freeze_count() > 0
        assert not any(_in_generation(mine, g) for g in (0, 1, 2))
        with gc_paused(long_lived=True):
            _Obj()
        assert not any(_in_generation(mine, g) for g in (0, 1, 2))
    finally:
        gc.unfreeze()
