"""Tests of ``contextpilot.plugins``: what every framework plugin shares."""
