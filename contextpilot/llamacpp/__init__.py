"""llama.cpp support: a slot-tracking proxy in front of ``llama-server``.

llama.cpp has no in-process hook (unlike SGLang and vLLM, see
:mod:`contextpilot.hooks`), so eviction sync runs as a separate HTTP proxy:
:mod:`~contextpilot.llamacpp.proxy` (the app and CLI, ``python -m
contextpilot.llamacpp.proxy``; settings in :mod:`~contextpilot.llamacpp.config`, what a
process holds in :mod:`~contextpilot.llamacpp.state`), :mod:`~contextpilot.llamacpp.slots` (the model
of what each slot holds) and :mod:`~contextpilot.llamacpp.translate` (OpenAI
chat and completions to llama-server's native ``/completion`` and back).
Needs the ``server`` extra.
"""
