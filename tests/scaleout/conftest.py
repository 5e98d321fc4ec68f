"""What the Ray tests share: the service's app served by a local Ray cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from secure_aiaas.config import Settings
from tests.conftest import IN_CI, free_port

try:
    import ray  # noqa: F401
except ImportError:  # in CI the `test` extra installs it: never skipped there
    if IN_CI:
        raise
    # Locally without ray[serve] (pip install -e '.[ray]'): the cluster tests are not
    # collected; the refusals (which need no Ray) still run.
    collect_ignore_glob = ["test_ray_*.py"]


@contextmanager
def serving_on_ray(settings: Settings) -> Iterator[str]:
    """A local cluster on the CI machine's two cores serving the app; yields its base URL."""
    import ray
    from ray import serve

    from secure_aiaas.scaleout import APP_NAME, ingress_application

    port = free_port()
    # Replica logs stay in the session directory (the audit store is the record here).
    ray.init(
        num_cpus=2, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(ingress_application(settings), name=APP_NAME, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
