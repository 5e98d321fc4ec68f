"""`secure-aiaas serve --engine ray`: connect to (or start) a Ray cluster, deploy the
ingress, serve until SIGINT/SIGTERM, then take the application down."""

from __future__ import annotations

import signal
import threading

import ray
import structlog
from ray import serve

from secure_aiaas.config import Settings
from secure_aiaas.scaleout.ingress import APP_NAME, ingress_application

log = structlog.get_logger(__name__)


def serve_on_ray(settings: Settings, *, host: str, port: int) -> None:
    """Deploy the ingress on Ray Serve and block until the process is told to stop.

    Args:
        settings: service settings; ``settings.scaleout`` says where the cluster is and how
            many replicas to run.
        host: address Serve's HTTP proxies bind on every node.
        port: their port.

    Raises:
        ConfigurationError: per-process state with several replicas (checked before Ray
            starts).
    """
    application = ingress_application(settings)  # refuses before any cluster starts
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
        serve.run(application, name=APP_NAME, route_prefix="/")
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
