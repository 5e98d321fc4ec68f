"""`ChatModelPool`: the served chat models, loaded at start-up (the lifespan owns one).

Importing it imports neither torch nor transformers: a service without chat models never
loads them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from secure_aiaas.errors import NotFoundError, ServiceError
from secure_aiaas.llm.config import DEFAULT_MAX_TOKENS, EngineConfig

if TYPE_CHECKING:
    from secure_aiaas.inference.registry import ModelRegistry
    from secure_aiaas.llm.engine import EngineObserver
    from secure_aiaas.llm.service import LLMService

logger = logging.getLogger(__name__)


class ChatModelPool:
    """The served chat models, loaded at startup (the lifespan owns one).

    Args:
        registry: the model registry.
        models: names (``name`` or ``name:version``) to serve; None serves every registered
            text-generation model.
        observer_for: a metrics observer per model name.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        models: Sequence[str] | None = None,
        device: str | None = None,
        dtype: str | None = None,
        config: EngineConfig | None = None,
        observer_for: Callable[[str], EngineObserver] | None = None,
        priority_of: Callable[[], int] | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        self.registry = registry
        self._models = list(models) if models is not None else None
        self._options: dict[str, Any] = {"device": device, "dtype": dtype, "config": config,
                                         "priority_of": priority_of,
                                         "default_max_tokens": default_max_tokens}  # fmt: skip
        self._observer_for = observer_for
        self._services: dict[str, LLMService] = {}
        self.failures: dict[str, str] = {}

    @property
    def ready(self) -> bool:
        return not self.failures

    def targets(self) -> list[tuple[str, str | None]]:
        """The ``(name, version or None)`` chat models this pool serves."""
        if self._models is not None:
            return [(e.partition(":")[0], e.partition(":")[2] or None) for e in self._models]
        targets: list[tuple[str, str | None]] = []
        for name in self.registry.names():
            try:
                if self.registry.show(name).task == "text-generation":
                    targets.append((name, None))
            except ServiceError:
                continue  # the predictor pool reports unreadable manifests
        return targets

    async def start(self) -> None:
        """Load (off the event loop) and start every chat model; failures keep it not ready."""
        targets = self.targets()
        if not targets:
            return  # torch and transformers (~1.5 s of start-up) are not imported for nothing
        from secure_aiaas.llm.service import LLMService

        for name, version in targets:
            observer = self._observer_for(name) if self._observer_for is not None else None
            try:
                service = await asyncio.to_thread(LLMService.load, self.registry, name, version,
                                                  observer=observer, **self._options)  # fmt: skip
            except (ServiceError, ValueError, RuntimeError, OSError) as exc:
                message = exc.public_message if isinstance(exc, ServiceError) else "failed to load"
                self.failures[f"{name}:{version or 'latest'}"] = message
                logger.error("llm.model_failed model=%s error=%s", name, type(exc).__name__)
                continue
            service.start()
            self._publish(service)
            logger.info("llm.model_loaded model=%s device=%s dtype=%s", service.model_id,
                        service.loaded.device, service.loaded.dtype)  # fmt: skip

    def _publish(self, service: LLMService) -> None:
        """Serve ``service`` under its name (`get` finds it from now on)."""
        self._services[service.name] = service

    def get(self, name: str) -> LLMService:
        service = self._services.get(name)
        if service is None:
            raise NotFoundError("model not found")
        return service

    def services(self) -> list[LLMService]:
        return [self._services[n] for n in sorted(self._services)]

    def cards(self) -> list[dict[str, Any]]:
        return [s.card() for s in self.services()]

    async def close(self) -> None:
        for service in self._services.values():
            await service.close()
        self._services.clear()
