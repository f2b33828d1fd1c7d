"""Tests of ``contextpilot.hooks``: engine eviction hooks (SGLang, vLLM) and the eviction notifier."""
