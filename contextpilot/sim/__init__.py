"""Prefix-cache simulators, bounds and an exact oracle, for tests and benchmarks."""

from contextpilot.sim.paged import PagedCacheSim
from contextpilot.sim.radix import RadixCacheSim
from contextpilot.sim.replay import build_prompts, mean_tokens, replay

__all__ = ["PagedCacheSim", "RadixCacheSim", "build_prompts", "mean_tokens", "replay"]
