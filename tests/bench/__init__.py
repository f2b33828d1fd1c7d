"""Tests of ``contextpilot.bench``: the benchmark CLI, its measures and the real-engine replays."""
