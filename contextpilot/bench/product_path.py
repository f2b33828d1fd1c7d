"""The product path for the online replay: a real contextpilot server (the
live index, ``POST /reorder``, the OpenAI proxy) and the llama.cpp
slot-tracking proxy, started as processes in front of a llama-server, so the
engine's evictions flow back into the index as they would in production."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from contextpilot.bench.llama_client import get_json, post_json
from contextpilot.bench.processes import free_port, stop_process, wait_ready

__all__ = ["ProductPath"]


class ProductPath:
    """A real contextpilot server and llama.cpp proxy in front of ``engine``."""

    def __init__(self, engine_url: str, workdir: Path) -> None:
        self.engine_url = engine_url
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []

    def _spawn(self, args: list[str], env: dict[str, str], health: str) -> None:
        logf = open(self.workdir / f"proc{len(self.procs)}.log", "wb")  # noqa: SIM115 (closed in stop)
        self.logs.append(logf)
        p = subprocess.Popen(args, env=env, stdout=logf, stderr=subprocess.STDOUT)
        self.procs.append(p)
        path = Path(logf.name)

        def tail() -> str:
            return f"{path}:\n" + path.read_bytes()[-2000:].decode(errors="replace")

        wait_ready(p, health, name=" ".join(args[:3]), timeout=60, output=tail)

    def __enter__(self) -> ProductPath:
        try:
            return self._start()
        except BaseException:  # one that started stays no orphan
            self.__exit__(None, None, None)
            raise

    def _start(self) -> ProductPath:
        self.cp_port, proxy_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.cp_port}"
        self.proxy_url = f"http://127.0.0.1:{proxy_port}"
        env = {**os.environ}
        env.pop("CONTEXTPILOT_API_KEY", None)
        self._spawn(
            [
                sys.executable,
                "-m",
                "contextpilot.server.http_server",
                "--port",
                str(self.cp_port),
                "--infer-api-url",
                self.proxy_url,
                # a long prompt on a loaded 2-core machine can take minutes
                "--engine-timeout",
                "900",
            ],
            env,
            self.url + "/stats",
        )
        penv = {
            **env,
            "LLAMA_SERVER_URL": self.engine_url,
            "CONTEXTPILOT_INDEX_URL": self.url,
        }
        self._spawn(
            [sys.executable, "-m", "contextpilot.llamacpp.proxy", "--port", str(proxy_port)],
            penv,
            self.proxy_url + "/stats",
        )
        return self

    def reorder(self, blocks: Sequence[str]) -> tuple[list[str], str]:
        r = post_json(self.url + "/reorder", {"contexts": [list(blocks)]})
        return list(r["reordered_contexts"][0]), str(r["request_ids"][0])

    def stats(self) -> dict:
        out = {"server": get_json(self.url + "/stats"), "proxy": get_json(self.proxy_url + "/stats")}
        return out

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self.procs):
            stop_process(p)
        for f in self.logs:
            f.close()
