"""Tests of ``contextpilot.sim``: the simulated prefix-cache engine and its bounds."""
