"""Device placement and torch threading: CUDA when available, else CPU; a setting forces one."""

from __future__ import annotations

import os
import threading

import torch

from secure_aiaas.errors import ConfigurationError

_threads_lock = threading.Lock()
_threads_configured = False


def select_device(override: str | None = None) -> torch.device:
    """The device models run on.

    Args:
        override: ``None``, ``""`` or ``"auto"`` picks CUDA when available, else CPU;
            ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` forces one.

    Raises:
        ConfigurationError: a forced CUDA device that this machine does not have.
    """
    choice = (override or "auto").strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except RuntimeError as exc:
        raise ConfigurationError(f"unknown inference device {choice!r}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigurationError("inference device 'cuda' requested but CUDA is unavailable")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigurationError(f"inference device {choice!r} does not exist")
    elif device.type != "cpu":
        raise ConfigurationError(f"unsupported inference device {choice!r}")
    return device


def configure_torch_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads once per process; returns the count in effect.

    One forward pass at a time per model already serialises work, so intra-op parallelism is
    where CPU cores help; inter-op parallelism only oversubscribes them. Default: every core
    this process may use, at most 8 (small models gain nothing beyond that).
    """
    global _threads_configured
    with _threads_lock:
        if num_threads is None:
            available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            num_threads = min(available or os.cpu_count() or 1, 8)
        torch.set_num_threads(max(1, num_threads))
        if not _threads_configured:
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:
                pass  # already fixed by earlier parallel work in this process; harmless
            _threads_configured = True
        return torch.get_num_threads()


def describe(device: torch.device) -> dict[str, str | int]:
    """What `/ready` or the startup log may say about the device (no user data)."""
    info: dict[str, str | int] = {"device": str(device), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["cuda_name"] = torch.cuda.get_device_name(device)
    return info
