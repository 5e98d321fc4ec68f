"""Request ids: unique within a process, across a fork, and shaped as before (32 hex)."""

from __future__ import annotations

import os
import re

from secure_aiaas.api.middleware import _next_request_id


def test_ids_are_32_hex_digits_and_never_repeat() -> None:
    ids = [_next_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_a_forked_child_draws_a_new_prefix() -> None:
    parent = _next_request_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, _next_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child[:16] != parent[:16]
