"""Serve the real app with the audit router included (until app.py includes it itself)."""

from __future__ import annotations

import sys


def main(port: int) -> None:
    import uvicorn

    from secure_aiaas.api.app import create_app
    from secure_aiaas.api.routes import audit
    from secure_aiaas.config import get_settings
    from secure_aiaas.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log.level, json_logs=settings.log.json_logs)
    app = create_app(settings)
    if not any(getattr(route, "path", "") == "/v1/audit/events" for route in app.routes):
        app.include_router(audit.router)
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                server_header=False, lifespan="on")


if __name__ == "__main__":  # worker processes (spawn) re-import this module: no server there
    main(int(sys.argv[1]))
