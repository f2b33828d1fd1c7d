"""Helpers the tests share; none of them is a test.

- :mod:`support.procs`: real processes on 127.0.0.1 (the contextpilot
  server, the simulated engine) and polling with deadlines; the examples'
  ``stack.py`` starts its processes with it too.
- :mod:`support.llamacpp_fake`: a stand-in for llama-server's native
  protocol, run as ``python -m support.llamacpp_fake``.
- :mod:`support.llamacpp_chain`: llama-server (stand-in or real) <- the
  llama.cpp proxy <- a contextpilot server, and requests through it.
- :mod:`support.planner_reference`: the straightforward batch planner, the
  oracle of ``tests/core/test_planner_flat.py``.
- :mod:`support.chat_scoring`, :mod:`support.readme`: prompt scoring and
  README examples run as written, for the plugins' suites.
- :mod:`support.paths`: where the checkout and the tests are, and the
  ``PYTHONPATH`` a child process needs to import them.

Imported as ``support.*``: ``tests/`` is on pytest's ``pythonpath``
(``pyproject.toml``); the plugins' suites (integrations/*/tests) and
``examples/stack.py`` put it on ``sys.path`` themselves.
"""
