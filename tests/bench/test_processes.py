"""The process helper (``contextpilot.bench.processes``) on real processes and
real sockets: readiness by status class, early exit and timeout reported with
the child's output, and every child stopped and reaped when its block ends."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from contextpilot.bench.processes import answers, free_port, read_log, spawn


class _Status(http.server.BaseHTTPRequestHandler):
    """Answers ``GET /<code>`` with that status."""

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self.send_response(int(self.path.strip("/")))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def status_server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_answers_counts_4xx_as_up_and_5xx_or_nothing_as_not(status_server: str) -> None:
    assert answers(status_server + "/200")
    assert answers(status_server + "/404")
    assert not answers(status_server + "/503")
    assert not answers(f"http://127.0.0.1:{free_port()}/health")  # nothing listens there


def test_early_exit_raises_with_the_childs_output() -> None:
    with pytest.raises(RuntimeError, match="exited early") as err, spawn("contextpilot_no_such_module"):
        pass
    assert "No module named" in str(err.value)


@pytest.mark.slow
def test_timeout_raises_and_the_child_is_reaped(tmp_path: Path) -> None:
    # a module that runs but never listens; it prints its pid first (the
    # deadline is far above its start-up time, so the pid is in its output)
    (tmp_path / "mute_service.py").write_text(
        "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(600)\n"
    )
    with (
        pytest.raises(TimeoutError, match="not ready") as err,
        spawn("mute_service", timeout=10, cwd=str(tmp_path)),
    ):
        pass
    pid = int(str(err.value).split(":\n", 1)[1].split()[0])
    # reaped: the pid is no child of ours any more (waitpid on it fails)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


SERVICE = """
import argparse, http.server
ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int)
ap.add_argument("--greeting")
args = ap.parse_args()
print(args.greeting, flush=True)
http.server.HTTPServer(("127.0.0.1", args.port), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def test_spawned_service_is_stopped_and_its_output_kept(tmp_path: Path) -> None:
    (tmp_path / "tiny_service.py").write_text(SERVICE)
    with spawn("tiny_service", "--greeting", "hello from the child", ready="/", cwd=str(tmp_path)) as proc:
        assert answers(proc.url + "/")
        assert proc.popen.poll() is None
        assert "hello from the child" in proc.output()  # readable while it runs
    assert proc.popen.returncode is not None  # reaped
    assert not answers(proc.url + "/")
    assert "hello from the child" in proc.output()  # and after its log is closed


def test_reading_a_running_childs_log_does_not_corrupt_it() -> None:
    # The child writes through the same open file (one shared offset): a reader that
    # seeks to 0 and back makes the child's writes in between land at the wrong place.
    log = tempfile.TemporaryFile()
    lines = 100_000
    code = f"import sys\nfor i in range({lines}):\n    sys.stdout.write(f'line {{i}}\\n'); sys.stdout.flush()"
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    seen = []
    while child.poll() is None:
        seen.append(read_log(log))
    child.wait()
    want = "".join(f"line {i}\n" for i in range(lines))
    assert read_log(log) == want
    assert all(want.startswith(s) for s in seen)  # every partial read was a prefix
    log.close()
