"""A real ``celery worker --pool prefork`` process for chaos tests, in its own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``celery -A <app> worker --pool prefork -c 2`` (or ``concurrency``), logging to a file.

    It runs in its own session, so ``kill_all`` (killpg) reaches the parent and its pool children
    at once, as when a machine dies.
    """

    def __init__(
        self, app: str, env: dict[str, str], queue: str, log: Path, name: str, concurrency: int = 2
    ) -> None:
        self.log = log
        args = [
            sys.executable, "-m", "celery", "-A", app, "worker", "--pool", "prefork",
            "-c", str(concurrency), "-l", "INFO", "-Q", queue, "-n", f"{name}@%h",
            "--without-heartbeat", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        self._out = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill_all(self) -> None:
        """SIGKILL the parent and every pool child at once."""
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (warm shutdown), then SIGKILL whatever is left of the process group."""
        try:
            if self.alive():
                self.process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)  # a stuck parent, orphaned pool children
            self.process.wait(timeout=10)
        finally:
            self._out.close()

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
