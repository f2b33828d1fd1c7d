"""Turning the engine hooks on inside an engine's process.

``activate()`` is what the ``.pth`` line calls when ``CONTEXTPILOT_INDEX_URL``
is set (see ``contextpilot.hooks.pth``). It imports no engine: it puts a
finder at the front of ``sys.meta_path`` that, when the engine itself
imports one of the modules in ``TARGETS``, lets the normal loader run and
then patches the module's cache class. Modules already imported are
patched at once. Any failure is logged and swallowed: the engine must
start whatever happens here.

Cost while no target is being imported: one dict lookup per import.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from contextpilot.hooks.notifier import EvictionNotifier, get_notifier
from contextpilot.hooks.sglang import patch_radix_cache_module, patch_unified_radix_cache_module
from contextpilot.hooks.vllm import patch_block_pool_module

__all__ = ["TARGETS", "activate", "is_active"]

log = logging.getLogger("contextpilot.hooks")

#: engine module -> patch function(module, notifier)
TARGETS: dict[str, Callable[[ModuleType, EvictionNotifier], bool]] = {
    "sglang.srt.mem_cache.radix_cache": patch_radix_cache_module,
    "sglang.srt.mem_cache.unified_radix_cache": patch_unified_radix_cache_module,
    "vllm.v1.core.block_pool": patch_block_pool_module,
}


def _patch(name: str, module: ModuleType, notifier: EvictionNotifier) -> None:
    try:
        TARGETS[name](module, notifier)
    except Exception:
        log.exception("contextpilot: patching %s failed; engine left as is", name)


class PostImportPatcher:
    """Meta-path finder that patches target modules right after they load.

    It finds nothing itself: for a target it asks the finders behind it for
    the real spec and wraps that spec's loader's ``exec_module``.
    """

    def __init__(self, notifier: EvictionNotifier) -> None:
        self.notifier = notifier

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> ModuleSpec | None:
        if fullname not in TARGETS:
            return None
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or isinstance(finder, PostImportPatcher):
                    continue
                find = getattr(finder, "find_spec", None)
                if find is not None:
                    spec = find(fullname, path, target)
                    if spec is not None:
                        break
            if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return spec
            run = spec.loader.exec_module
            notifier = self.notifier

            def exec_module(module: ModuleType) -> None:
                run(module)
                _patch(fullname, module, notifier)

            # a path finder makes one loader per spec, so this touches only this import
            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec
        except Exception:
            log.exception("contextpilot: import hook failed for %s; engine left as is", fullname)
            return None


_active: EvictionNotifier | None = None


def is_active() -> bool:
    return _active is not None


def activate(environ: dict[str, str] | None = None) -> bool:
    """Install the import hook if ``CONTEXTPILOT_INDEX_URL`` is set; True if
    hooks are (now) active. Idempotent; never raises."""
    global _active
    try:
        if _active is not None:
            return True
        notifier = get_notifier(environ)
        if notifier is None:
            return False
        if not any(isinstance(f, PostImportPatcher) for f in sys.meta_path):
            sys.meta_path.insert(0, PostImportPatcher(notifier))
        _active = notifier
        for name in TARGETS:
            module = sys.modules.get(name)
            if module is not None:
                _patch(name, module, notifier)
        log.info("contextpilot: engine eviction hooks on, reporting to %s", notifier.url)
        return True
    except Exception:
        log.exception("contextpilot: hook activation failed; engine left as is")
        return False
