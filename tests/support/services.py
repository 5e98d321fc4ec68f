"""Private instances of the real services, for fault tests that stop them mid-load.

The machine's own PostgreSQL and Redis serve the rest of the suite; a fault test that stops
one must stop its *own*: these start a PostgreSQL cluster (initdb, as the postgres user) or a
Redis server on free ports under a test's tmp directory, and can stop and restart them.
`small_tmpfs` mounts a tiny filesystem to fill up (root only, as in CI).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import IN_CI, free_port


def _need(condition: bool, reason: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def _pg_bin() -> Path | None:
    roots = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    return roots[-1] if roots else None


class PrivatePostgres:
    def __init__(self, base: Path) -> None:
        bin_dir = _pg_bin()
        _need(
            bin_dir is not None and os.geteuid() == 0,
            "a private PostgreSQL needs its binaries and root (to run them as postgres)",
        )
        assert bin_dir is not None
        self.bin = bin_dir
        # Not under pytest's tmp dirs: those are 0700 root, and postgres must reach its own.
        self.dir = Path(tempfile.mkdtemp(prefix="saiaas-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self._as_postgres(
            str(self.bin / "initdb"),
            "-D",
            str(self.dir / "data"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=120
        )

    def start(self) -> None:
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.dir / "data"),
            "-w",
            "-l",
            str(self.dir / "log"),
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        """As abruptly as a crash: immediate shutdown, no checkpoint."""
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop"
        )


@contextmanager
def private_postgres(base: Path) -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres(base)
    pg.start()
    try:
        yield pg
    finally:
        try:
            pg.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(pg.dir, ignore_errors=True)


class PrivateRedis:
    def __init__(self, base: Path) -> None:
        _need(shutil.which("redis-server") is not None, "redis-server is not installed")
        self.port = free_port()
        self.dir = base / "redis"
        self.dir.mkdir(parents=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(10)


@contextmanager
def private_redis(base: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(base)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def small_tmpfs(path: Path, size: str = "8m") -> Iterator[Path]:
    """A tiny filesystem at ``path`` (root only): fill it to make writes fail with ENOSPC."""
    _need(os.geteuid() == 0, "mounting a tmpfs needs root (CI runs as root)")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path, leave_bytes: int = 0) -> Path:
    """Fill the filesystem of ``directory`` up to ``leave_bytes`` free; returns the filler."""
    filler = directory / "filler.bin"
    with filler.open("wb") as fh:
        chunk = b"\0" * (1 << 16)
        while shutil.disk_usage(directory).free > leave_bytes + len(chunk):
            fh.write(chunk)
        remaining = shutil.disk_usage(directory).free - leave_bytes
        if remaining > 0:
            try:
                fh.write(b"\0" * remaining)
            except OSError:
                pass
    return filler
