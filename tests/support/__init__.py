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
- :mod:`support.chat_scoring`, :mod:`support.readme`: prompt scoring (and
  the replay check, ``check_replay``) and README examples run as written,
  for the plugins' suites;
- :mod:`support.plugin_fixtures`: the fixtures and checks those suites
  share (a real server, the simulated engine, the two-query check);
- :mod:`support.embedding`: a deterministic offline embedding
  (``word_vector``) and its LlamaIndex and mem0 adapters;
- :mod:`support.locomo`: the LoCoMo data fixture and its marker check.
- :mod:`support.paths`: where the checkout and the tests are, and the
  ``PYTHONPATH`` a child process needs to import them.

Imported as ``support.*``: ``tests/`` is on pytest's ``pythonpath``
(``pyproject.toml``, and ``../../tests`` in each plugin's own
``pyproject.toml`` for integrations/*/tests). The examples do not use it.
"""
