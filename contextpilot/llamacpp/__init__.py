"""llama.cpp support: a slot-tracking proxy in front of ``llama-server``.

llama.cpp has no in-process hook (unlike SGLang and vLLM, see
:mod:`contextpilot.hooks`), so eviction sync runs as a separate HTTP proxy:
:mod:`~contextpilot.llamacpp.proxy` (the CLI, ``python -m
contextpilot.llamacpp.proxy``; routes in :mod:`~contextpilot.llamacpp.app`, forwarding and
slot accounting in :mod:`~contextpilot.llamacpp.forward`, settings in
:mod:`~contextpilot.llamacpp.config`, what a process holds in
:mod:`~contextpilot.llamacpp.state`, ``/stats`` in :mod:`~contextpilot.llamacpp.stats`
with :mod:`~contextpilot.llamacpp.latency`, the JSONL request log in
:mod:`~contextpilot.llamacpp.reqlog`, ``/slots`` polling in :mod:`~contextpilot.llamacpp.poll`),
:mod:`~contextpilot.llamacpp.slots` (the model
of what each slot holds) and :mod:`~contextpilot.llamacpp.translate` (OpenAI
chat and completions to llama-server's native ``/completion`` and back).
Needs the ``server`` extra.
"""
