"""The processes the bench starts: its own redis-server (when no ``--redis``) and Celery workers.

Workers are ``celery -A bench.app worker`` subprocesses (``--pool solo`` or ``--pool prefork
-c 2``) in their own session, configured through the environment (see :mod:`bench.app`). A
worker is ready once it has answered a round-trip task. Peak RSS comes from ``/proc/<pid>/status``
(``VmHWM``) of the worker's main process and its children, reset between scenarios by writing
``5`` to ``/proc/<pid>/clear_refs``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A throwaway ``redis-server`` (no persistence) on a free port."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, binary: str = "redis-server") -> RedisServer:
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--save", "", "--appendonly", "no",
             "--bind", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)
        client.close()
        return cls(port, proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc/<pid>/task/*/children)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for child in text.split():
            found.append(int(child))
            found.extend(children(int(child)))
    return found


def vm_kb(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


@dataclass
class Worker:
    pool: str
    concurrency: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    timing_dir: Path
    _offsets: dict[Path, int] = field(default_factory=dict)
    #: True when a warm shutdown did not end within 5 s.
    stop_stuck: bool = False

    @property
    def label(self) -> str:
        return "solo" if self.pool == "solo" else f"{self.pool} -c {self.concurrency}"

    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def reset_peak_rss(self) -> None:
        for pid in self.pids():
            # Not permitted somewhere: VmHWM is then the peak since the process started.
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/clear_refs").write_text("5")

    def peak_rss_kb(self) -> dict[int, int]:
        """VmHWM of the main process and of each child, in KiB."""
        return {pid: vm_kb(pid, "VmHWM") for pid in self.pids()}

    def timing_lines(self) -> list[dict[str, str]]:
        """``durable_celery.timing`` lines written since the last call, parsed into fields."""
        lines: list[dict[str, str]] = []
        for path in sorted(self.timing_dir.glob("timing-*.log")):
            with path.open("r", encoding="utf-8") as handle:
                handle.seek(self._offsets.get(path, 0))
                text = handle.read()
            complete = text[: text.rfind("\n") + 1]  # a line being written is read next time
            self._offsets[path] = self._offsets.get(path, 0) + len(complete.encode())
            for line in complete.splitlines():
                fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
                fields["pid"] = path.stem.split("-", 1)[1]
                lines.append(fields)
        return lines

    def dump_stacks(self) -> None:
        """Ask every worker process to write its threads' stacks to the worker log."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGRTMIN + 2)  # bench.app.STACKS_SIGNAL
        time.sleep(0.5)

    def stacks(self) -> str:
        """The stack dumps written by :meth:`dump_stacks`, one section per process."""
        paths = sorted(self.timing_dir.glob("stacks-*.txt"))
        return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in paths if p.stat().st_size)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM); cold (SIGQUIT) after 5 s; SIGKILL of its group after 10 s.

        Nothing is in flight when the bench stops a worker; the escalation is for billiard pool
        processes that sometimes linger in their exit path (``_ensure_messages_consumed``).
        """
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGQUIT, 5)):
            if self.proc.poll() is not None:
                return
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                self.stop_stuck = True
        self.dump_stacks()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def start_worker(
    pool: str, concurrency: int, env: dict[str, str], workdir: Path, settings: str = "",
    attempts: int = 2,
) -> Worker:
    """Launch a worker and wait until it has run a round-trip task (twice at most)."""
    for attempt in range(1, attempts + 1):
        worker = _launch(pool, concurrency, env, workdir, settings)
        try:
            wait_ready(worker)
            return worker
        except (TimeoutError, RuntimeError) as exc:
            worker.stop()
            if attempt == attempts:
                raise
            print(f"worker --pool {pool} not ready (attempt {attempt}): {str(exc)[:200]}; "
                  "starting another", file=sys.stderr)
    raise AssertionError("unreachable")


def _launch(
    pool: str, concurrency: int, env: dict[str, str], workdir: Path, settings: str
) -> Worker:
    name = f"{pool}-{uuid.uuid4().hex[:6]}"
    timing_dir = workdir / f"timing-{name}"
    timing_dir.mkdir(parents=True)
    log_path = workdir / f"worker-{name}.log"
    worker_env = {**os.environ, **env, "BENCH_WORKER": "1", "BENCH_TIMING_DIR": str(timing_dir)}
    if settings:
        worker_env["BENCH_SETTINGS"] = settings
    cmd = [
        sys.executable, "-m", "celery", "-A", "bench.app", "worker", "--pool", pool,
        "-c", str(concurrency), "-l", "WARNING", "-n", f"{name}@%h",
        "--without-heartbeat", "--without-gossip", "--without-mingle",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Worker(pool, concurrency, proc, log_path, timing_dir)


def wait_ready(worker: Worker, timeout: float = 20.0) -> None:
    from . import app as bench_app

    client = bench_app.client()
    deadline = time.monotonic() + timeout
    for _ in range(max(worker.concurrency, 1)):  # one answer per pool process, at best
        key = f"{bench_app.PREFIX}:ping:{uuid.uuid4().hex}"
        bench_app.ping.delay(key)
        while not client.blpop([key], timeout=0.5):
            if worker.proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {worker.proc.returncode}; see {worker.log_path}:\n"
                    + worker.log_path.read_text()[-3000:]
                )
            if time.monotonic() > deadline:
                worker.dump_stacks()
                raise TimeoutError(
                    f"worker not ready after {timeout}s: {worker.stacks()[-6000:]}"
                )
