"""The ingress deployment: `create_app(settings)` inside every Ray Serve replica.

The app is built in the replica (`__serve_build_asgi_app__`, Serve's late-bound ingress), not
pickled from the driver: its lifespan opens stores, watches the policy and starts worker
pools, and Serve runs that lifespan (uvicorn's ``LifespanOn``) in each replica after
building the app, as uvicorn does for one process. Only `Settings` (plain values) cross
from the driver.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve.deployment import Application

from secure_aiaas.config import Settings
from secure_aiaas.errors import ConfigurationError
from secure_aiaas.scaleout.preflight import shared_state_problems
from secure_aiaas.scaleout.served_by import ASGIApp, ServedBy

APP_NAME = "secure_aiaas"


def replica_settings(settings: Settings, num_cpus: float | None = None) -> Settings:
    """Settings as one replica uses them: its worker pools sized to the CPUs Ray reserved
    for it (``num_cpus``, default the ingress's), not to every core of the node (several
    replicas share a node)."""
    cpus = max(1, int(num_cpus or settings.scaleout.replica_num_cpus))
    privacy = settings.privacy
    he = settings.he
    return settings.model_copy(
        update={
            "privacy": privacy
            if privacy.processes
            else privacy.model_copy(update={"processes": cpus}),
            "he": he if he.workers else he.model_copy(update={"workers": cpus}),
        }
    )


def portable(settings: Settings) -> Settings:
    """Directories made absolute in the driver: replicas do not start in its working
    directory (on other nodes the same absolute paths must hold the same files)."""
    return settings.model_copy(
        update={
            "data_dir": Path(settings.data_dir).resolve(),
            "keys_dir": Path(settings.keys_dir).resolve(),
            "policy_dir": Path(settings.policy_dir).resolve(),
            "models_dir": settings.resolved_models_dir().resolve(),
            # SQLite defaults resolved here too, so a single replica finds the same files.
            "database_url": settings.resolved_database_url(),
            "audit_url": settings.resolved_audit_url(),
        }
    )


@serve.ingress()
class Ingress:
    """One replica of the service; the app itself comes from `__serve_build_asgi_app__`."""

    def __init__(
        self,
        settings: Settings,
        he_evaluator: Any = None,
        models: dict[str, Any] | None = None,
        chats: dict[str, Any] | None = None,
    ) -> None:
        self._settings = settings
        # Handles to the other deployments (Serve passes one for each bound deployment),
        # or None: that work in this replica's own pools.
        self._he_evaluator = he_evaluator  # the `he` deployment
        self._models = models  # a `model-…` deployment per plaintext model entry
        self._chats = chats  # a `chat-…` deployment per chat model name

    def __serve_build_asgi_app__(self) -> ASGIApp:
        # Imported here: the driver never builds the app (or loads its heavy imports).
        from secure_aiaas.api.app import create_app
        from secure_aiaas.logging import configure_logging

        settings = replica_settings(self._settings)
        configure_logging(settings.log.level, json_logs=settings.log.json_logs)
        he_pool_type = None
        if self._he_evaluator is not None:
            from secure_aiaas.scaleout.he_deployment import RemoteHEPool

            he_pool_type = partial(RemoteHEPool, evaluator=self._he_evaluator)
        model_pool_type = None
        if self._models is not None:
            from secure_aiaas.scaleout.model_deployment import RemoteModelPool

            model_pool_type = partial(RemoteModelPool, models_by_entry=self._models)
        chat_pool_type = None
        if self._chats is not None:
            from secure_aiaas.scaleout.chat_deployment import RemoteChatModelPool

            chat_pool_type = partial(RemoteChatModelPool, models_by_name=self._chats)
        app = create_app(
            settings,
            he_pool_type=he_pool_type,
            model_pool_type=model_pool_type,
            chat_pool_type=chat_pool_type,
        )
        replica = serve.get_replica_context().replica_id.unique_id
        app.add_middleware(ServedBy, replica=replica)
        return app


# Typed loosely: Ray's decorator overloads confuse the checker (and Ray may be absent).
IngressDeployment: Any = serve.deployment(name="ingress")(Ingress)


def ingress_application(settings: Settings) -> Application:
    """The ingress deployment bound to ``settings`` (replica counts and limits from
    ``settings.scaleout``), ready for `serve.run`.

    Raises:
        ConfigurationError: state that replicas must share is per process (see
            `shared_state_problems`).
    """
    problems = shared_state_problems(settings)
    if problems:
        raise ConfigurationError("; ".join(problems))
    scale = settings.scaleout
    replicas: dict[str, Any]
    if scale.ingress_min_replicas == scale.ingress_max_replicas:
        replicas = {"num_replicas": scale.ingress_min_replicas}
    else:
        replicas = {
            "autoscaling_config": {
                "min_replicas": scale.ingress_min_replicas,
                "max_replicas": scale.ingress_max_replicas,
                "target_ongoing_requests": scale.target_ongoing_requests,
            }
        }
    deployment = IngressDeployment.options(
        max_ongoing_requests=scale.max_ongoing_requests,
        ray_actor_options={"num_cpus": scale.replica_num_cpus},
        **replicas,
    )
    shared = portable(settings)
    he_evaluator = None
    if settings.he.enabled and scale.he_replicas:
        from secure_aiaas.scaleout.he_deployment import HEDeployment

        he_settings = replica_settings(shared, num_cpus=scale.he_replica_num_cpus)
        he_evaluator = HEDeployment.options(
            num_replicas=scale.he_replicas,
            max_ongoing_requests=scale.max_ongoing_requests,
            ray_actor_options={"num_cpus": scale.he_replica_num_cpus},
        ).bind(he_settings)
    models = model_deployments(shared) if scale.model_replicas else None
    chats = chat_deployments(shared) if settings.llm.enabled and scale.chat_replicas else None
    application: Application = deployment.bind(shared, he_evaluator, models, chats)
    return application


def _one_per_model(
    deployment: Any,
    kind: str,
    targets: list[tuple[str, str | None]],
    settings: Settings,
    *,
    replicas: int,
    num_cpus: float,
) -> dict[tuple[str, str | None], Application]:
    """``deployment`` bound once per ``(name, version or None)`` target, named
    ``<kind>-<name>[-<version>]``, each replica loading that model from ``settings``."""
    return {
        (name, version): deployment.options(
            name=f"{kind}-{name}" if version is None else f"{kind}-{name}-{version}",
            num_replicas=replicas,
            max_ongoing_requests=settings.scaleout.max_ongoing_requests,
            ray_actor_options={"num_cpus": num_cpus},
        ).bind(settings, name, version)
        for name, version in targets
    }


def model_deployments(settings: Settings) -> dict[str, Application]:
    """A bound `model-<name>` deployment per served plaintext model, by pool entry (the
    driver reads the registry's manifests only; the replicas load and verify the weights)."""
    from secure_aiaas.inference import ModelPool, ModelRegistry
    from secure_aiaas.scaleout.model_deployment import ModelDeployment

    scale = settings.scaleout
    registry = ModelRegistry(settings.resolved_models_dir())
    targets = ModelPool(registry, models=settings.inference.models or None).targets()
    bound = _one_per_model(
        ModelDeployment,
        "model",
        targets,
        settings,
        replicas=scale.model_replicas,
        num_cpus=scale.model_replica_num_cpus,
    )
    return {(n if v is None else f"{n}:{v}"): app for (n, v), app in bound.items()}


def chat_deployments(settings: Settings) -> dict[str, Application]:
    """A bound `chat-<name>` deployment per served chat model, by name."""
    from secure_aiaas.inference import ModelRegistry
    from secure_aiaas.llm.pool import ChatModelPool
    from secure_aiaas.scaleout.chat_deployment import ChatDeployment

    scale = settings.scaleout
    registry = ModelRegistry(settings.resolved_models_dir())
    targets = ChatModelPool(registry, models=settings.llm.models or None).targets()
    bound = _one_per_model(
        ChatDeployment,
        "chat",
        targets,
        settings,
        replicas=scale.chat_replicas,
        num_cpus=scale.chat_replica_num_cpus,
    )
    return {name: app for (name, _), app in bound.items()}


def app_from_environment(args: dict[str, str] | None = None) -> Application:
    """An application builder for Serve config files and KubeRay's `RayService`
    (``import_path: secure_aiaas.scaleout.ingress:app_from_environment``): settings from
    the ``SAIAAS_*`` environment of the cluster, ``args`` unused."""
    from secure_aiaas.config import get_settings

    return ingress_application(get_settings())
