"""Tests of ``contextpilot.server``: the HTTP server as a real process (API, CLI, routing, limits)."""
