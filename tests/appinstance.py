"""App instances as separate processes (as in production: one uvicorn each) on 127.0.0.1,
sharing one story database; for the PostgreSQL tests and benchmarks/store_bench.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.pgserver import free_port

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60  # two Python processes importing the app on a busy 2-core box
STOP_TIMEOUT_S = 10

SERVER_SCRIPT = """
import sys, uvicorn
from tests.fakegen import FakeEngine, fake_writer
from batplots.web import WebConfig, create_app
app = create_app(WebConfig(db_path=sys.argv[1], writer=fake_writer(FakeEngine(delay=float(sys.argv[3])))))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


class AppInstance:
    """One `create_app` under uvicorn in its own process; FakeEngine writes (delay s per piece)."""

    def __init__(self, db: str, delay: float = 0.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, db, str(self.port), str(delay)], cwd=REPO,
                                     env={**os.environ, "PYTHONPATH": str(REPO)})

    def wait_up(self) -> "AppInstance":
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app instance on port {self.port} exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the app instance on port {self.port} did not answer within {START_TIMEOUT_S} s")

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)  # no chance to clean up
        self.proc.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
