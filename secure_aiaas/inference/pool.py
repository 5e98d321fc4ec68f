"""The served models: loaded, warmed up and batched at startup; readiness waits for them.

The lifespan builds one `ModelPool`, ``await pool.start()``, and hands it to the pipeline;
``pool.ready`` backs ``/ready``; ``await pool.close()`` at shutdown drains the batchers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from secure_aiaas.errors import ConfigurationError, NotFoundError, ServiceError
from secure_aiaas.inference.batcher import BatcherStats, BatchRecord, DynamicBatcher, Outputs
from secure_aiaas.inference.manifest import Manifest
from secure_aiaas.inference.registry import ModelRegistry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchingConfig:
    """Batching knobs for one model (`DynamicBatcher` documents them)."""

    max_batch_size: int = 64
    max_delay_s: float = 0.0
    max_queue_size: int = 1024


class ModelInputs(Protocol):
    """What serving needs of a model besides its forward pass (a `Predictor` has it)."""

    @property
    def manifest(self) -> Manifest: ...

    def rows(self, item: Any) -> int: ...


class Batching(Protocol):
    """What serving needs of a batcher (a `DynamicBatcher`, or a remote deployment's
    stand-in under the Ray engine)."""

    max_batch_size: int

    async def submit(self, item: Any, *, priority: int | None = None) -> Outputs: ...

    def stats(self) -> BatcherStats: ...

    async def close(self) -> None: ...


class ServedModel:
    """One loaded model version behind its batcher."""

    def __init__(self, predictor: ModelInputs, batcher: Batching) -> None:
        self.manifest: Manifest = predictor.manifest
        self.predictor = predictor
        self.batcher = batcher

    async def infer(self, item: Any, *, priority: int | None = None) -> Outputs:
        """Named outputs for one request (a numpy batch, or a list of strings for text).

        A request larger than the batcher's ``max_batch_size`` is split into chunks that are
        queued together (each counts against the queue bound) and joined back in order.
        """
        size = self.batcher.max_batch_size
        rows = self.predictor.rows(item)
        if rows <= size:
            return await self.batcher.submit(item, priority=priority)
        parts = await asyncio.gather(
            *(
                self.batcher.submit(item[start : start + size], priority=priority)
                for start in range(0, rows, size)
            )
        )
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


class ModelPool:
    """Loads models from a registry, warms them up, and serves them through batchers.

    Args:
        registry: where models live.
        models: ``"name"`` (latest version) or ``"name:version"`` entries; None serves the
            latest version of every registered model.
        device: ``None``/``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        batching: default batching knobs; ``overrides`` per model name.
        num_threads: torch intra-op threads (None: `configure_torch_threads` default).
        on_batch: metrics hook called after every batch of every model.
        priority_of: the calling request's priority (queues serve higher first).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        models: Sequence[str] | None = None,
        device: str | None = None,
        batching: BatchingConfig | None = None,
        overrides: Mapping[str, BatchingConfig] | None = None,
        num_threads: int | None = None,
        on_batch: Callable[[BatchRecord], None] | None = None,
        priority_of: Callable[[], int] | None = None,
    ) -> None:
        self.registry = registry
        self._priority_of = priority_of
        self.device: str | None = None
        self._wanted = list(models) if models is not None else None
        self._device = device
        self._batching = batching or BatchingConfig()
        self._overrides = dict(overrides or {})
        self._num_threads = num_threads
        self._on_batch = on_batch
        self._served: dict[str, dict[str, ServedModel]] = {}
        self.failures: dict[str, str] = {}
        self._ready = False

    @property
    def ready(self) -> bool:
        """True once every requested model is loaded and warm (and none failed)."""
        return self._ready

    async def start(self, *, strict: bool = False) -> None:
        """Load, verify, warm up and batch every model, off the event loop.

        A model that fails verification or loading is not served and keeps the pool
        not-ready (fail closed). With ``strict`` the first failure raises instead.
        """
        targets = self.targets()
        if not targets and self._device in (None, "", "auto"):
            # Nothing to place: torch (~1 s of start-up) is not imported for it.
            self._ready = True
            return
        from secure_aiaas.inference.device import configure_torch_threads, select_device

        configure_torch_threads(self._num_threads)
        device = select_device(self._device)
        self.device = str(device)
        for name, version in targets:
            key = f"{name}:{version or 'latest'}"
            try:
                predictor = await asyncio.to_thread(
                    self.registry.load, name, version, device=device
                )
                config = self._batching_for(predictor.manifest.name)
                await asyncio.to_thread(predictor.warmup, config.max_batch_size)
            except (ServiceError, ValueError, RuntimeError, OSError) as exc:
                message = exc.public_message if isinstance(exc, ServiceError) else "failed to load"
                self.failures[key] = message
                logger.error("inference.model_failed model=%s error=%s", key, type(exc).__name__)
                if strict:
                    raise ConfigurationError(f"model {key}: {message}") from exc
                continue
            batcher = DynamicBatcher(
                predictor,
                max_batch_size=config.max_batch_size,
                max_delay_s=config.max_delay_s,
                max_queue_size=config.max_queue_size,
                on_batch=self._on_batch,
                priority_of=self._priority_of,
            )
            batcher.start()
            self._publish(ServedModel(predictor, batcher))
            logger.info("inference.model_loaded model=%s device=%s", predictor.manifest.id, device)
        self._ready = not self.failures

    def _batching_for(self, name: str) -> BatchingConfig:
        return self._overrides.get(name, self._batching)

    def _publish(self, served: ServedModel) -> None:
        """Serve ``served`` under its name and version (`get` finds it from now on)."""
        manifest = served.manifest
        self._served.setdefault(manifest.name, {})[manifest.version] = served

    def targets(self) -> list[tuple[str, str | None]]:
        """The ``(name, version or None)`` entries this pool serves (chat models excluded)."""
        if self._wanted is None:
            # Chat models have their own engine (`secure_aiaas.llm`): not predictors to batch here.
            return [(n, None) for n in self.registry.names() if not self._is_chat_model(n)]
        targets: list[tuple[str, str | None]] = []
        for entry in self._wanted:
            name, _, version = entry.partition(":")
            targets.append((name, version or None))
        return targets

    def serves(self, name: str) -> bool:
        """Whether some version of ``name`` is loaded and served."""
        return bool(self._served.get(name))

    def _is_chat_model(self, name: str) -> bool:
        try:
            return self.registry.show(name).task == "text-generation"
        except ServiceError:
            return False  # an unreadable manifest fails (and is reported) when loaded

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The served model (latest loaded version unless given); NotFoundError otherwise."""
        versions = self._served.get(name)
        if not versions:
            raise NotFoundError("model not found")
        if version is None:
            from secure_aiaas.inference.manifest import version_key

            return versions[max(versions, key=version_key)]
        if version not in versions:
            raise NotFoundError("model version not found")
        return versions[version]

    def manifests(self) -> list[Manifest]:
        """Every served model version (for ``/v1/models`` and v2 metadata)."""
        return [m.manifest for versions in self._served.values() for m in versions.values()]

    def resources(self) -> dict[str, Any]:
        """Devices, their memory, and the served models (for the operators' resource view)."""
        import torch

        cuda: list[dict[str, Any]] = []
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(index)
                cuda.append(
                    {
                        "index": index,
                        "name": torch.cuda.get_device_name(index),
                        "memory_total_bytes": total,
                        "memory_free_bytes": free,
                        "memory_allocated_bytes": torch.cuda.memory_allocated(index),
                        "memory_reserved_bytes": torch.cuda.memory_reserved(index),
                    }
                )
        models = []
        for versions in self._served.values():
            for served in versions.values():
                stats = served.batcher.stats()
                models.append(
                    {
                        "model": served.manifest.id,
                        "task": served.manifest.task,
                        "device": self.device,
                        "queue_depth": stats.queue_depth,
                        "max_queue_size": stats.max_queue_size,
                        "max_batch_size": stats.max_batch_size,
                        "rejected_total": stats.rejected_total,
                    }
                )
        device = self.device
        if device is None:  # nothing placed yet (start-up skipped torch): where models would go
            from secure_aiaas.inference.device import select_device

            device = str(select_device(self._device))
        return {
            "device": device,
            "torch_threads": torch.get_num_threads(),
            "cuda_available": torch.cuda.is_available(),
            "cuda_devices": cuda,
            "models": sorted(models, key=lambda m: m["model"]),
            "failures": sorted(self.failures),
        }

    def stats(self) -> list[BatcherStats]:
        return [m.batcher.stats() for versions in self._served.values() for m in versions.values()]

    async def close(self) -> None:
        """Drain every batcher and stop its thread; the pool is not ready afterwards."""
        self._ready = False
        for versions in self._served.values():
            for served in versions.values():
                await served.batcher.close()
        self._served.clear()
