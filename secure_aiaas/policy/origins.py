"""Where the enforced policy comes from: the policy directory, or the published version.

An origin answers two questions for the engine's watcher: a cheap ``stamp()`` (has anything
changed since the last load?) and a full ``read()`` (the validated policy, with the stamp it
was read at). Both raise `StoreUnavailableError` when the origin cannot be reached at all,
which the engine tells apart from a policy that was read and refused.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Protocol

from secure_aiaas.policy.loader import PolicySource, policy_files, read_policy


class PolicyOrigin(Protocol):
    """A source of policy versions the engine can watch."""

    kind: str  # "files" | "published": shown by readiness

    def stamp(self) -> Hashable:
        """What changes whenever the policy may have changed (cheap; called every tick).

        Raises:
            StoreUnavailableError: the origin cannot be reached.
        """

    def read(self) -> tuple[Hashable, PolicySource]:
        """The current policy, validated, and the stamp it was read at.

        Raises:
            PolicyValidationError: the policy there is refused (``file:line: reason``).
            StoreUnavailableError: the origin cannot be reached (try again later).
        """

    def close(self) -> None:
        """Release connections (the engine stopped watching)."""


class FileOrigin:
    """The policy directory itself (one server, or replicas sharing a mounted directory)."""

    kind = "files"

    def __init__(
        self, policy_dir: Path, model_file: str = "model.conf", policy_file: str = "policy.csv"
    ) -> None:
        self.policy_dir = policy_dir
        self.model_file = model_file
        self.policy_file = policy_file

    def stamp(self) -> tuple[tuple[str, float, int], ...]:
        stamp = []
        for path in policy_files(self.policy_dir, self.model_file, self.policy_file):
            try:
                st = path.stat()
                stamp.append((path.name, st.st_mtime, st.st_size))
            except FileNotFoundError:
                stamp.append((path.name, 0.0, -1))
        return tuple(stamp)

    def close(self) -> None:
        pass

    def read(self) -> tuple[Hashable, PolicySource]:
        stamp = self.stamp()  # before reading: an edit racing the read changes it again
        return stamp, read_policy(self.policy_dir, self.model_file, self.policy_file)
