"""In-engine eviction hooks (SGLang, vLLM) and their shared notifier.

Kept import-light: engine processes import this, so nothing here may pull
in numpy, scipy or HTTP libraries at import time, and nothing here imports
the server. llama.cpp has no in-process hook: its slot-tracking proxy is
:mod:`contextpilot.llamacpp`, which uses the same notifier.
"""
