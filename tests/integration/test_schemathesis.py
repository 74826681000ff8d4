"""schemathesis against the API's own description, with an admin key: generated requests to
every operation get no 5xx, and the answers match what ``/openapi.json`` promises (status
codes, media types, bodies, headers).

Bounded (a few examples per operation) so it fits the suite's time, and run against an API of
its own (own broker, own Redis database): the generated requests declare streams, change
compatibility levels and revoke keys, which must not disturb the shared pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from api.auth import SSE
from api.openapi import build_openapi
from api.routes import ROUTES
from schemas.catalog import load_catalog
from tests.conftest import Engines, OwnStack, own_stack

pytestmark = pytest.mark.integration

SCHEMA = schemathesis.openapi.from_dict(build_openapi(load_catalog(), ROUTES))
#: Live routes answer a stream that does not end: their generated requests are checked on the
#: status and headers they start with (tests/e2e/test_live_*.py follow the streams themselves).
EVENT_STREAMS = {(e.method, e.path) for e in ROUTES if e.media == SSE}


@pytest.fixture(scope="module")
def api(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnStack]:
    with own_stack(
        engines, tmp_path_factory.mktemp("schemathesis"), 13, {}, components=("api",)
    ) as stack:
        yield stack


@SCHEMA.parametrize()
@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_generated_requests_get_documented_answers(case: schemathesis.Case, api: OwnStack) -> None:
    if (case.method.upper(), case.path) in EVENT_STREAMS:
        check_event_stream(case, api)
        return
    case.call_and_validate(
        base_url=api.base,
        headers={"Authorization": f"Bearer {api.key}"},
        # Out: "a schema-valid body must be accepted" (and its converse). Bodies are checked
        # beyond their JSON shape (an Avro schema must compile, a role must exist, SQL must
        # be one read statement): such a 4xx is the contract, not a bug. The registry also
        # takes parameters it does not declare, as Confluent's does.
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
    )


def check_event_stream(case: schemathesis.Case, api: OwnStack) -> None:
    """The generated request, sent as schemathesis would, but only its head is read."""
    documented = {int(code) for code in case.operation.definition.raw["responses"]}
    with httpx.stream(
        case.method.upper(),
        api.base + case.formatted_path,
        params=case.query,
        headers={**(case.headers or {}), "Authorization": f"Bearer {api.key}"},
        timeout=10,
    ) as response:
        assert response.status_code in documented, (response.status_code, documented)
        media = response.headers["content-type"]
        if response.status_code == 200:
            assert media.startswith("text/event-stream"), media
        else:
            assert media == "application/problem+json", media
