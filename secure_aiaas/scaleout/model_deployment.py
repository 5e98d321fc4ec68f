"""Plaintext models in deployments of their own, one per served model, batched by Serve.

The ingress keeps everything about a request but the forward pass: authentication, policy,
the v2 body's parsing and checks against the manifest, scrubbing, the audit record. Only
``ServedModel.infer`` moves: its batcher is a `RemoteBatcher` that sends each chunk (at
most ``INFERENCE__MAX_BATCH_SIZE`` rows) to the model's `ModelReplica`s, where
`@serve.batch` gathers concurrent calls from every ingress replica into one forward pass.
One deployment per model keeps each batch homogeneous (one model, one input shape).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ray import serve
from ray.exceptions import RayTaskError

from secure_aiaas.config import Settings
from secure_aiaas.errors import InferenceError, OverloadedError, ServiceError
from secure_aiaas.inference.batcher import BatcherStats, Outputs
from secure_aiaas.inference.manifest import Manifest
from secure_aiaas.inference.pool import ModelPool, ServedModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelDescription:
    """What the ingress needs of a remote model: its manifest (metadata, input checks) and,
    for text models, the tokenizer (token counts in OpenAI's ``usage``)."""

    manifest: Manifest
    tokenizer: Any = None

    def rows(self, item: Any) -> int:
        return len(item)  # a numpy batch's first dimension, or a list of texts


@dataclass(frozen=True)
class BatchReply:
    """One call's rows of a batch's outputs, and which batch that was (no payload else)."""

    outputs: Outputs
    replica: str
    batch_requests: int
    batch_rows: int


class ModelReplica:
    """One replica of one plaintext model: its predictor behind `@serve.batch`."""

    async def __init__(  # type: ignore[misc]  # Serve awaits it
        self, settings: Settings, name: str, version: str | None
    ) -> None:
        from secure_aiaas.inference import ModelRegistry
        from secure_aiaas.inference.device import configure_torch_threads, select_device
        from secure_aiaas.logging import configure_logging

        configure_logging(settings.log.level, json_logs=settings.log.json_logs)
        cfg = settings.inference
        # Threads for the CPUs Ray reserved for this replica, not every core of the node.
        cpus = max(1, int(settings.scaleout.model_replica_num_cpus))
        configure_torch_threads(cfg.num_threads or cpus)
        device = select_device(None if cfg.device == "auto" else cfg.device)
        registry = ModelRegistry(settings.resolved_models_dir())
        # Verified (SHA-256) and warmed up here, as `ModelPool.start` does in-process; a
        # model that does not load fails the replica, so the application does not start.
        self._predictor = await asyncio.to_thread(registry.load, name, version, device=device)
        await asyncio.to_thread(self._predictor.warmup, cfg.max_batch_size)
        self._device = str(device)
        # One thread: passes run one at a time, off the event loop, as the batcher's do.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        self._replica = serve.get_replica_context().replica_id.unique_id
        batched: Any = self.predict  # Serve's wrapper carries the setters
        batched.set_max_batch_size(cfg.max_batch_size)  # rows, counted by batch_size_fn
        batched.set_batch_wait_timeout_s(settings.scaleout.model_batch_wait_s)

    def describe(self) -> ModelDescription:
        """The manifest of the version loaded here (and its tokenizer, if any)."""
        return ModelDescription(
            self._predictor.manifest, getattr(self._predictor, "tokenizer", None)
        )

    @serve.batch(batch_size_fn=lambda items: sum(len(item) for item in items))
    async def predict(self, items: list[Any]) -> list[BatchReply]:
        """Concurrent calls' items (each at most a batch of rows) in one forward pass."""
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self._forward, items)
        except ServiceError:
            raise
        except Exception as exc:
            # The type only: a message may describe the (private) input.
            logger.error(
                "inference.batch_failed model=%s error=%s",
                self._predictor.manifest.id,
                type(exc).__name__,
            )
            raise InferenceError() from None
        rows = [self._predictor.rows(item) for item in items]
        replies: list[BatchReply] = []
        start = 0
        for count in rows:
            end = start + count
            part = {k: v[start:end] for k, v in outputs.items()}
            replies.append(BatchReply(part, self._replica, len(items), sum(rows)))
            start = end
        return replies

    def _forward(self, items: list[Any]) -> Outputs:
        return self._predictor.predict(self._predictor.collate(items))

    def __del__(self) -> None:
        self._executor.shutdown(wait=False)


class RemoteBatcher:
    """The ingress's batcher for a remote model: calls its deployment, counts what it sees.

    Its ``max_batch_size`` is the rows one call may carry (the ingress splits a larger
    request into calls of this size, as in-process).
    """

    def __init__(self, model: Any, model_id: str, max_batch_size: int) -> None:
        self._model = model
        self.model_id = model_id
        self.max_batch_size = max_batch_size
        self._requests = self._rows = self._rejected = self._failed = 0
        self._pending = 0
        self.served_by: Counter[str] = Counter()
        # How many requests shared the batch of each answered call (> 1: batched together).
        self.batch_requests: Counter[int] = Counter()

    async def submit(self, item: Any, *, priority: int | None = None) -> Outputs:
        """The outputs of ``item`` from a model replica.

        Raises:
            ServiceError: the replica's own refusal (overload, bad input, a failed pass),
                as an in-process batcher raises it.
        """
        del priority  # Serve's queues are first come, first served
        self._pending += 1
        try:
            reply: BatchReply = await self._model.predict.remote(item)
        except RayTaskError as exc:
            # The replica's own refusal: the same answer as from a local batcher, not a 500.
            if isinstance(exc.cause, OverloadedError):
                self._rejected += 1
            else:
                self._failed += 1
            if isinstance(exc.cause, ServiceError):
                raise exc.cause from None
            raise
        finally:
            self._pending -= 1
        self._requests += 1
        self._rows += len(item)
        self.served_by[reply.replica] += 1
        self.batch_requests[reply.batch_requests] += 1
        return reply.outputs

    def stats(self) -> BatcherStats:
        """This ingress replica's view: calls in flight, answered, failed."""
        return BatcherStats(
            model=self.model_id,
            max_batch_size=self.max_batch_size,
            max_delay_s=0.0,
            max_queue_size=0,
            queue_depth=self._pending,
            queue_rows=0,
            requests_total=self._requests,
            rows_total=self._rows,
            batches_total=0,  # counted by the model replicas, not here
            rejected_total=self._rejected,
            failed_total=self._failed,
        )

    async def close(self) -> None:
        """Nothing to drain here: the calls in flight end with their replicas."""


class RemoteModelPool(ModelPool):
    """The ingress's model pool: manifests here, forward passes in the model deployments.

    Args:
        models_by_entry: a handle to each served model's deployment, by pool entry
            (``name`` or ``name:version``, as `ModelPool.targets` gives them).
        kwargs: `ModelPool`'s arguments.
    """

    def __init__(self, *args: Any, models_by_entry: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._remote = dict(models_by_entry)

    async def start(self, *, strict: bool = False) -> None:
        """Ask each model deployment which version it serves; nothing is loaded here.

        Serve starts the model replicas before the ingress, so each answers; a model that
        failed to load failed its deployment, and the application with it (fail closed).
        """
        self.device = "remote"
        for entry, model in self._remote.items():
            description: ModelDescription = await model.describe.remote()
            manifest = description.manifest
            size = self._batching_for(manifest.name).max_batch_size
            batcher = RemoteBatcher(model, manifest.id, size)
            self._publish(ServedModel(description, batcher))
            logger.info("inference.model_remote model=%s entry=%s", manifest.id, entry)
        self._ready = True

    def resources(self) -> dict[str, Any]:
        """The in-process view, plus which model replicas answered and how many requests
        shared their batches."""
        view = super().resources()
        remote = {
            served.manifest.id: served.batcher
            for versions in self._served.values()
            for served in versions.values()
        }
        for model in view["models"]:
            batcher = remote[model["model"]]
            if isinstance(batcher, RemoteBatcher):
                model["served_by"] = dict(batcher.served_by)
                model["batch_requests"] = dict(sorted(batcher.batch_requests.items()))
        return view


# Typed loosely: Ray's decorator overloads confuse the checker.
ModelDeployment: Any = serve.deployment(ModelReplica)
