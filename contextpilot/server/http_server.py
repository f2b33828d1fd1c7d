"""``python -m contextpilot.server.http_server`` (also ``contextpilot serve``).

    python -m contextpilot.server.http_server --port 8765 \\
        --infer-api-url http://localhost:30000 [--stateless] [--api-key KEY]

Run ``--help`` for every flag and its environment variable.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from contextpilot.server.config import ServerConfig, parse_config

__all__ = ["main", "serve"]

log = logging.getLogger("contextpilot.server")


def serve(config: ServerConfig) -> None:
    import uvicorn

    from contextpilot.server.app import create_app

    level = "DEBUG" if config.log_level == "trace" else config.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("contextpilot").setLevel(level)
    # one line per proxied call is noise unless debugging
    logging.getLogger("httpx").setLevel(level if config.log_level in ("debug", "trace") else "WARNING")
    if config.host not in ("127.0.0.1", "localhost", "::1") and not config.api_key:
        log.warning("listening on %s without --api-key: anyone who can reach it can use it", config.host)
    # the app object (not an import string): every parsed setting reaches it
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        access_log=config.log_level in ("debug", "trace"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    serve(parse_config(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
