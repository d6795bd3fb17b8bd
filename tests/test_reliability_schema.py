"""Schemathesis against our own OpenAPI document, every route: no 5xx, every answer in the documented
status codes and shapes. A bounded number of examples here; `make soak` runs many more."""

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.checks import CheckFunction

from main import app
from tests.conftest import BACKENDS
from tests.live import LoggedServer, backend_database

TOKEN = "schema-test-token"
schema = schemathesis.openapi.from_dict(app.openapi())


@pytest.fixture(scope="module", params=BACKENDS)
def schema_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LoggedServer]:
    folder = tmp_path_factory.mktemp(f"schema-{request.param}")
    with backend_database(request.param, request=request, folder=folder) as database_url:
        server = LoggedServer(
            {"DATABASE_URL": database_url, "RAZORPAY_WEBHOOK_SECRET": "test_secret", "API_TOKENS": TOKEN},
            log_path=folder / "server.log",
        ).start()
        try:
            yield server
        finally:
            server.stop()
        assert "Traceback" not in server.log()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as shared:
        yield shared


# Excluded per route and per check only, each for a stated reason (listed in RELIABILITY.md). The
# numeric times are an open gap in routes this suite does not own: remove those entries once fixed,
# and the check runs again.
_NUMERIC_TIMES = "params.py: since/until also accept a bare number (pydantic reads it as a unix time)"
_OPAQUE_CURSOR = "`after` is a cursor this server issued: a schema cannot say which strings are cursors"
_SLASHED_IDS = "ids may hold '/': another method on /payments/{id}/recover reads the payment 'id/recover'"
KNOWN_GAPS: dict[str, list[tuple[CheckFunction, str]]] = {
    "GET /payments/{payment_id}/events": [
        (checks.negative_data_rejection, _NUMERIC_TIMES),
        (checks.positive_data_acceptance, _OPAQUE_CURSOR),
    ],
    "GET /events": [
        (checks.negative_data_rejection, _NUMERIC_TIMES),
        (checks.positive_data_acceptance, _OPAQUE_CURSOR),
    ],
    # A payment id may hold "/" (docs/read-api.md), so `GET /payments/x/recover` is the state of the
    # payment "x/recover", answered by its own route, not a 405 for the recover route's path.
    "* /payments/{payment_id}/recover": [  # any method: the check sends the ones not documented
        (checks.unsupported_method, _SLASHED_IDS),
        (checks.allow_header_conformance, _SLASHED_IDS),
    ],
}


def check_case(case: schemathesis.Case[Any], server: LoggedServer, session: requests.Session) -> None:
    gaps = KNOWN_GAPS.get(f"{case.method.upper()} {case.path}", []) + KNOWN_GAPS.get(f"* {case.path}", [])
    excluded = [check for check, _ in gaps]
    case.call_and_validate(
        base_url=server.url,
        session=session,
        headers={"Authorization": f"Bearer {TOKEN}"},
        excluded_checks=excluded or None,
    )


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_route_answers_within_its_schema(
    case: schemathesis.Case[Any], schema_server: LoggedServer, session: requests.Session
) -> None:
    check_case(case, schema_server, session)
