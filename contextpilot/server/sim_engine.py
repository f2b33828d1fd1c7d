"""Old path of the simulator engine, kept because scripts run it
(``python -m contextpilot.server.sim_engine``): it lives in
:mod:`contextpilot.sim.engine`."""

from contextpilot.sim.engine import create_engine_app, main, render_chat, tokenize

__all__ = ["create_engine_app", "main", "render_chat", "tokenize"]

if __name__ == "__main__":
    raise SystemExit(main())
