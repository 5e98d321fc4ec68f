"""The SDK against the stand-in service of `secure_aiaas.testing`, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from secure_aiaas.testing import Script, create_app, serve


@dataclass
class StandIn:
    url: str
    script: Script


@pytest.fixture(scope="module")
def _standin_server() -> Iterator[StandIn]:
    script = Script()
    with serve(create_app(script)) as url:
        yield StandIn(url, script)


@pytest.fixture
def standin(_standin_server: StandIn) -> StandIn:
    """The module's stand-in, its script and what it saw reset for this test."""
    fresh = Script()
    script = _standin_server.script
    script.refusals, script.seen = fresh.refusals, fresh.seen
    script.chat_bodies, script.streams_closed = fresh.chat_bodies, 0
    return _standin_server
