"""An audit-store outage on demand: another connection holds the store's write lock."""

from __future__ import annotations

import sqlite3
import threading


class Outage:
    """Makes the audit store unwritable by holding its write lock from another connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._release = threading.Event()
        self._held = threading.Event()
        self._thread: threading.Thread | None = None

    def _hold(self) -> None:
        if self.url.startswith("sqlite"):
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            self._held.set()
            self._release.wait(60)
            conn.execute("ROLLBACK")
            conn.close()
        else:
            import psycopg

            base, _, query = self.url.partition("?")
            options = query.removeprefix("options=").replace("%3D", "=")
            with psycopg.connect(base, options=options) as conn:
                conn.execute("LOCK TABLE audit_head IN EXCLUSIVE MODE")
                self._held.set()
                self._release.wait(60)
                conn.rollback()

    def __enter__(self) -> Outage:
        self._thread = threading.Thread(target=self._hold)
        self._thread.start()
        assert self._held.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        assert self._thread is not None
        self._thread.join(10)
