"""``contextpilot`` command line: ``contextpilot bench|serve [...]``."""

from __future__ import annotations

import sys

USAGE = (
    "usage: contextpilot bench [options]   benchmark (see: contextpilot bench --help)\n"
    "       contextpilot serve [options]   HTTP server (see: contextpilot serve --help)"
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd == "bench":
        from contextpilot.bench.__main__ import main as bench

        return bench(rest)
    if cmd == "serve":
        from contextpilot.server.http_server import main as serve

        return serve(rest)
    print(f"unknown command {cmd!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
