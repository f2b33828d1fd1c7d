"""Install or remove the engine eviction hooks in a Python environment.

    python -m contextpilot.install_hook                 # this interpreter's site-packages
    python -m contextpilot.install_hook --site DIR      # another environment's
    python -m contextpilot.install_hook --uninstall
    python -m contextpilot.install_hook --standalone contextpilot_hooks.py
    python -m contextpilot.install_hook --bench         # .pth start-up cost

Then ``CONTEXTPILOT_INDEX_URL=http://<contextpilot>:8765 <engine command>``.
See ``contextpilot.hooks.pth``.
"""

from __future__ import annotations

from contextpilot.hooks.pth import main

if __name__ == "__main__":
    raise SystemExit(main())
