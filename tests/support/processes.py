"""Finding a test server's child processes (its workers, audit writers, scrubber pools)."""

from __future__ import annotations

import psutil


def descendants_running(pid: int, marker: str, *, recursive: bool = True) -> list[psutil.Process]:
    """The processes under ``pid`` (only its own children unless ``recursive``) whose command
    line names ``marker``."""
    found = []
    for child in psutil.Process(pid).children(recursive=recursive):
        try:
            if marker in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found
