"""Schemathesis over every operation of the OpenAPI document, against a real server with the
real models: positive and negative cases, at least 100 examples each, as keys of two roles in
two tenants. No 5xx, no response outside its documented schema, invalid input refused with a
4xx, and the server alive at the end."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from secure_aiaas.api.app import create_app
from secure_aiaas.config import Settings
from secure_aiaas.schemas import HE_CONTENT_TYPE
from tests.conftest import Server

pytestmark = pytest.mark.slow

# Two roles in two tenants: a trusted tenant's user, a sensitive tenant's he-user.
WHO = ("alice", "medco-he")
EXAMPLES = 100


# The encrypted-inference frames are bytes: send generated bodies as they are.
schemathesis.serializer.alias(HE_CONTENT_TYPE, "application/octet-stream")


def _schema() -> schemathesis.BaseSchema:  # type: ignore[name-defined]
    # The document the server serves at /openapi.json (built without starting it; a test
    # below checks the served one is the same).
    loaded = schemathesis.openapi.from_dict(create_app(Settings()).openapi())
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=EXAMPLES,
        deterministic=True,
    )
    # A schema-violating body may also be refused for its size, before it is parsed.
    loaded.config.checks.negative_data_rejection.expected_statuses.append("413")
    return loaded


schema = _schema()


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=EXAMPLES)
def test_every_operation(
    case: schemathesis.Case,  # type: ignore[name-defined]
    model_server: Server,
) -> None:
    for who in WHO:  # every generated case, as each of the two callers
        case.call_and_validate(
            base_url=model_server.base_url,
            headers={"Authorization": f"Bearer {model_server.api_keys[who]}"},
            checks=[
                not_a_server_error,
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
                negative_data_rejection,
            ],
            timeout=60,
        )


def test_the_served_document_is_the_one_fuzzed(model_server: Server) -> None:
    served = httpx.get(model_server.base_url + "/openapi.json", timeout=10).json()
    assert served == create_app(Settings()).openapi()


def test_server_alive_after_fuzzing(model_server: Server) -> None:
    assert httpx.get(model_server.base_url + "/v2/health/live", timeout=10).status_code == 200
    assert model_server.process.poll() is None
    assert "Traceback" not in model_server.logs()
