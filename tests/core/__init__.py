"""Tests of ``contextpilot.core``: the library (index, planner, pilot, dedup, chat, sessions)."""
