"""`secure-aiaas serve --engine ray`: connect to (or start) a Ray cluster, deploy the
ingress, serve until SIGINT/SIGTERM, then take the application down."""

from __future__ import annotations

import signal
import threading

import ray
import structlog
from ray import serve

from secure_aiaas.config import Settings
from secure_aiaas.errors import ConfigurationError
from secure_aiaas.scaleout.ingress import APP_NAME, ingress_application

log = structlog.get_logger(__name__)


def check_spine(settings: Settings) -> None:
    """What each replica's start-up checks first (keys, identity and audit stores, the
    published policy), checked once here: a replica's own start-up failure reaches the
    driver only as Serve's "failed to start 6 times", its reason in the replica logs.

    Raises:
        ConfigurationError: keys unsafe, a store unreachable, no policy publication.
    """
    from secure_aiaas.api.app import build_spine

    spine = build_spine(settings)
    spine.policy.stop_watching()  # closes the policy origin (never started here)
    spine.audit.store.dispose()
    spine.registry.dispose()


def _why_not_started() -> str:
    """The last line of Serve's report on the first deployment that did not start (the
    ingress, or a model, chat or HE deployment it needs; the rest is a traceback)."""
    app = serve.status().applications.get(APP_NAME)
    deployments = list(app.deployments.values()) if app is not None else []
    message = next((d.message for d in deployments if d.status != "HEALTHY" and d.message), "")
    lines = [line for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else "no reason reported"


def serve_on_ray(settings: Settings, *, host: str, port: int) -> None:
    """Deploy the ingress on Ray Serve and block until the process is told to stop.

    Args:
        settings: service settings; ``settings.scaleout`` says where the cluster is and how
            many replicas to run.
        host: address Serve's HTTP proxies bind on every node.
        port: their port.

    Raises:
        ConfigurationError: per-process state with several replicas, or what a replica's
            start-up would refuse (both checked before Ray starts); replicas that did not
            start.
    """
    application = ingress_application(settings)  # refuses before any cluster starts
    check_spine(settings)
    scale = settings.scaleout
    if scale.ray_address:
        ray.init(address=scale.ray_address)
    else:
        ray.init(num_cpus=scale.num_cpus, include_dashboard=False)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        try:
            serve.run(application, name=APP_NAME, route_prefix="/")
        except RuntimeError as exc:
            raise ConfigurationError(
                f"the ingress replicas did not start ({_why_not_started()}); their logs: "
                "`ray logs` or <ray session dir>/logs/serve/replica_*.log"
            ) from exc
        log.info(
            "scaleout.serving",
            address=scale.ray_address or "local",
            host=host,
            port=port,
            ingress_replicas=[scale.ingress_min_replicas, scale.ingress_max_replicas],
        )
        stop.wait()
    finally:
        # A cluster we started goes with us; on a shared one only our application does.
        if scale.ray_address:
            serve.delete(APP_NAME)
        else:
            serve.shutdown()  # type: ignore[no-untyped-call, unused-ignore]
        ray.shutdown()
        log.info("scaleout.stopped")
