"""`secure-aiaas`: the operator's command line (typer).

Every command that creates something takes ``--json`` and then prints exactly one JSON object.
Administrative changes made here (tenants, API keys) are recorded in the audit store like
requests are.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from secure_aiaas.cli import _common
from secure_aiaas.cli.audit import app as audit_app
from secure_aiaas.cli.client import app as client_app
from secure_aiaas.cli.models import app as models_app
from secure_aiaas.cli.policy import app as policy_app
from secure_aiaas.cli.privacy import app as privacy_app
from secure_aiaas.cli.tenants import apikey_app, tenant_app

if TYPE_CHECKING:
    from secure_aiaas.config import Settings

app = typer.Typer(
    help="secure_aiaas: secure inference service.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
keys_app = typer.Typer(help="Server key material in the keys directory.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(tenant_app, name="tenant")
app.add_typer(apikey_app, name="apikey")
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")
app.add_typer(models_app, name="models")
app.add_typer(privacy_app, name="privacy")
app.add_typer(client_app, name="client")

JsonOpt = _common.JsonOpt


@app.callback()
def _root(
    actor: Annotated[
        str | None,
        typer.Option(
            "--actor",
            envvar="SAIAAS_ACTOR",
            help="who you are, recorded with admin actions beside the OS account",
        ),
    ] = None,
) -> None:
    """secure_aiaas: secure inference service."""
    # Everything the service writes (stores, keys, caches) is private to its user.
    os.umask(0o077)
    if actor:  # read back by the admin commands' audit records (one CLI process, one actor)
        os.environ[_common.ACTOR_ENV] = actor


@keys_app.command("init")
def keys_init(as_json: JsonOpt = False) -> None:
    """Create the missing server keys (0600 files in a 0700 directory)."""
    from secure_aiaas.crypto.keystore import check_permissions, init_keys

    settings = _common.settings()
    created = init_keys(settings.keys_dir)
    problems = check_permissions(settings.keys_dir)
    result = {"keys_dir": str(settings.keys_dir), "created": created, "problems": problems}
    _common.emit(result, as_json, f"keys in {settings.keys_dir}: created {created or 'nothing'}")
    if problems:
        _common.fail("; ".join(problems))


@keys_app.command("export-public")
def keys_export_public(
    output: Annotated[str | None, typer.Option("-o", "--output", help="file to write")] = None,
) -> None:
    """Print (or write) the audit public key in PEM, for offline verification."""
    from secure_aiaas.crypto.keystore import load_keys, public_key_pem

    pem = public_key_pem(load_keys(_common.settings().keys_dir).audit_public_key)
    if output:
        with open(output, "wb") as fh:
            fh.write(pem)
    else:
        sys.stdout.write(pem.decode())


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    workers: Annotated[
        int | None, typer.Option(help="worker processes (default SAIAAS_SERVER__WORKERS, 1)")
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            envvar="SAIAAS_ENGINE",
            help="local (uvicorn on this host) or ray (Ray Serve replicas; "
            "default SAIAAS_SCALEOUT__ENGINE, local)",
        ),
    ] = None,
) -> None:
    """Serve the API with uvicorn, or on Ray Serve (--engine ray)."""
    import shutil

    from secure_aiaas.logging import configure_logging

    settings = _common.settings()
    chosen = engine or settings.scaleout.engine
    if chosen not in ("local", "ray"):
        _common.fail(f"--engine must be local or ray, not {chosen!r}")
    if chosen == "ray":
        if workers is not None:
            _common.fail("--workers is for --engine local; on Ray set SAIAAS_SCALEOUT__INGRESS_*")
        _serve_on_ray(settings, host or settings.server.host, port or settings.server.port)
        return

    import uvicorn

    from secure_aiaas.api.app import create_app

    configure_logging(settings.log.level, json_logs=settings.log.json_logs)
    count = workers or settings.server.workers
    bind = {
        "host": host or settings.server.host,
        "port": port or settings.server.port,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "lifespan": "on",
    }
    if count == 1:
        uvicorn.run(create_app(settings), **bind)  # type: ignore[arg-type]
        return
    if not settings.redis_url:
        _common.fail(
            "--workers > 1 needs SAIAAS_REDIS_URL: quotas and the anonymous budget "
            "must be shared by the workers, not kept per process"
        )
    # Prometheus multiprocess mode: every worker writes its samples under one directory,
    # `GET /metrics` (on any worker) merges them. Set before the workers start.
    metrics_dir = settings.data_dir / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    os.environ["SAIAAS_SERVER__WORKERS"] = str(count)
    uvicorn.run("secure_aiaas.api.app:app_from_environment", factory=True, workers=count, **bind)  # type: ignore[arg-type]


def _serve_on_ray(settings: Settings, host: str, port: int) -> None:
    """Refuse per-process state before Ray starts (or is even imported), then serve."""
    from secure_aiaas.errors import ServiceError
    from secure_aiaas.logging import configure_logging
    from secure_aiaas.scaleout import shared_state_problems

    problems = shared_state_problems(settings)
    if problems:
        _common.fail("--engine ray refused:\n  " + "\n  ".join(problems))
    try:
        from secure_aiaas.scaleout import serve_on_ray
    except ImportError:
        _common.fail("--engine ray needs Ray Serve: pip install 'secure-aiaas[ray]'")
    configure_logging(settings.log.level, json_logs=settings.log.json_logs)
    try:
        serve_on_ray(settings, host=host, port=port)
    except ServiceError as exc:  # refused before Ray started, or replicas that did not start
        _common.fail(f"--engine ray: {exc.public_message}")


def main() -> NoReturn:  # pragma: no cover - console entry
    app()
    raise SystemExit(0)


__all__ = ["app"]
