"""Engine eviction hooks (SGLang, vLLM, llama.cpp) and their shared notifier.

Kept import-light: engine processes import this, so nothing here may pull
in numpy, scipy or HTTP libraries at import time.
"""
