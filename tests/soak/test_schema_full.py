"""The schemathesis run of tests/test_reliability_schema.py with many more examples per route."""

from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from tests.live import LoggedServer
from tests.test_reliability_schema import check_case, schema, schema_server, session

pytestmark = pytest.mark.soak
__all__ = ["schema_server", "session"]  # fixtures, imported so that this module can use them


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_route_answers_within_its_schema_at_length(
    case: schemathesis.Case[Any], schema_server: LoggedServer, session: requests.Session
) -> None:
    check_case(case, schema_server, session)
