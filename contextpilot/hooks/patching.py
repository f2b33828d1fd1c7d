"""Patching engine classes defensively.

Engines change their internals between releases. A class is patched only
when every method the hook needs exists with the parameters it expects;
otherwise one warning is logged and the class is left exactly as it was
(all or nothing: a half-patched cache could, for instance, record events
nobody drains). Patching twice is a no-op.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MARK", "patch_class", "signature_mismatch"]

log = logging.getLogger("contextpilot.hooks")

#: attribute set on every wrapper we install (and on patched classes)
MARK = "__contextpilot_hook__"


def signature_mismatch(func: Any, expected: tuple[str, ...]) -> str | None:
    """``None`` when ``func``'s leading parameters are named ``expected`` and
    any others are optional (defaults, ``*args``, ``**kwargs``); else what differs."""
    if not callable(func):
        return "not callable"
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError) as e:
        return f"no signature ({e})"
    names = [p.name for p in params]
    if tuple(names[: len(expected)]) != expected:
        return f"has parameters {names}, expected {list(expected)} first"
    extra = [
        p.name
        for p in params[len(expected) :]
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if extra:
        return f"requires new parameters {extra}"
    return None


def patch_class(
    cls: type,
    wrappers: Mapping[str, tuple[tuple[str, ...], Callable[[Callable[..., Any]], Callable[..., Any]]]],
    what: str,
    optional: frozenset[str] = frozenset(),
) -> bool:
    """Replace ``cls.<name>`` by ``make(original)`` for every
    ``name: (expected_params, make)``; True when patched (now or before).
    Names in ``optional`` may be absent (older releases); when present
    they must match like the others."""
    if cls.__dict__.get(MARK):
        return True
    originals: dict[str, Any] = {}
    for name, (expected, _) in wrappers.items():
        orig = getattr(cls, name, None)
        if orig is None and name in optional:
            continue
        problem = "missing" if orig is None else signature_mismatch(orig, expected)
        if problem is not None:
            log.warning(
                "contextpilot: %s.%s %s; %s eviction sync disabled (engine left untouched)",
                cls.__qualname__,
                name,
                problem,
                what,
            )
            return False
        if getattr(orig, MARK, False):  # another copy of the hooks got here first
            return True
        originals[name] = orig
    for name, (_, make) in wrappers.items():
        if name not in originals:
            continue
        wrapper = make(originals[name])
        try:
            wrapper.__name__ = name
            wrapper.__qualname__ = f"{cls.__qualname__}.{name}"
            wrapper.__doc__ = originals[name].__doc__
            wrapper.__wrapped__ = originals[name]  # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            pass
        setattr(wrapper, MARK, True)
        setattr(cls, name, wrapper)
    setattr(cls, MARK, True)
    log.info("contextpilot: %s eviction sync installed on %s", what, cls.__qualname__)
    return True
