"""Helpers the tests share; none of them is a test.

- :mod:`support.procs`: real processes on 127.0.0.1 (the contextpilot
  server, the simulated engine), re-exported from the package's
  :mod:`contextpilot.bench.processes` (which the examples use too), polling
  with deadlines, and a peer that never answers.
- :mod:`support.clock`: a clock the test sets by hand.
- :mod:`support.llamacpp_chain`: llama-server (the package's stand-in
  ``contextpilot.sim.llama_server``, or the real one) <- the llama.cpp proxy
  <- a contextpilot server, and requests through it.
- :mod:`support.planner_reference`: the straightforward batch planner, the
  oracle of ``tests/core/test_planner_flat.py``.
- :mod:`support.chat_scoring`, :mod:`support.readme`: prompt scoring and
  README examples run as written, for the plugins' suites.
- :mod:`support.paths`: where the checkout and the tests are, and the
  ``PYTHONPATH`` a child process needs to import them.

Imported as ``support.*``: ``tests/`` is on pytest's ``pythonpath``
(``pyproject.toml``); the plugins' suites (integrations/*/tests) put it on
``sys.path`` themselves. The examples do not use it.
"""
