"""Every read parameter is validated: malformed ids, cursors, limits and dates are 422 `validation_error`
in the one error shape, and hostile strings in paths and queries never reach a 500. Both databases."""

import base64
from urllib.parse import quote

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select

from api import paging
from database import normalise_url
from models import Event
from tests.support import razorpay_delivery, razorpay_event


def cursor(*values: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


HISTORY = "/payments/pay_014/events"
INVALID = [
    # payment ids: too long, control characters
    ("/payments/" + "p" * 256, "path.payment_id"),
    ("/payments/" + "p" * 256 + "/events", "path.payment_id"),
    ("/payments/pay%00014", "path.payment_id"),
    ("/payments/pay%0A014/events", "path.payment_id"),
    ("/payments/pay%0D%0ASet-Cookie:%20x=1", "path.payment_id"),
    ("/payments/%1B%5B31m", "path.payment_id"),
    ("/payments/%7F", "path.payment_id"),
    # stored event lookups
    ("/events/razorpay/" + "e" * 256, "path.event_id"),
    ("/events/razorpay/evt%00", "path.event_id"),
    ("/events/Razorpay/evt_1", "path.provider"),
    ("/events/" + "r" * 33 + "/evt_1", "path.provider"),
    ("/events/razor%20pay/evt_1", "path.provider"),
    # limits
    (f"{HISTORY}?limit=0", "query.limit"),
    (f"{HISTORY}?limit=1001", "query.limit"),
    (f"{HISTORY}?limit=-1", "query.limit"),
    (f"{HISTORY}?limit=ten", "query.limit"),
    (f"{HISTORY}?limit=1.5", "query.limit"),
    (f"{HISTORY}?limit=", "query.limit"),
    (f"{HISTORY}?limit=99999999999999999999999", "query.limit"),
    ("/events?limit=1001", "query.limit"),
    # cursors: garbage, foreign, forged
    (f"{HISTORY}?after=garbage", "query.after"),
    (f"{HISTORY}?after=%00", "query.after"),
    (f"{HISTORY}?after={'A' * 201}", "query.after"),
    (f"{HISTORY}?after={cursor('f', 12)}", "query.after"),  # a feed cursor on a history
    (f"/events?after={cursor('h', '2025-07-07T10:59:25+00:00', 12)}", "query.after"),  # and back
    (f"{HISTORY}?after={cursor('h', '2025-07-07T10:59:25', 12)}", "query.after"),  # no offset
    (f"{HISTORY}?after={cursor('h', 'yesterday', 12)}", "query.after"),
    (f"{HISTORY}?after={cursor('h', 20250707, 12)}", "query.after"),
    (f"{HISTORY}?after={cursor('h', '0001-01-01T00:00:00+05:00', 12)}", "query.after"),
    (f"{HISTORY}?after={cursor('h', '2025-07-07T10:59:25+00:00', 2**63)}", "query.after"),  # past BIGINT
    (f"{HISTORY}?after={cursor('h', '2025-07-07T10:59:25+00:00', -1)}", "query.after"),
    (f"{HISTORY}?after={cursor('h', '2025-07-07T10:59:25+00:00', True)}", "query.after"),
    (f"{HISTORY}?after={cursor('h', '2025-07-07T10:59:25+00:00', '12')}", "query.after"),
    (f"{HISTORY}?after={cursor('h', '2025-07-07T10:59:25+00:00')}", "query.after"),
    (f"/events?after={cursor('f', 12, 13)}", "query.after"),
    (f"/events?after={base64.urlsafe_b64encode(b'{}').decode()}", "query.after"),
    (f"/events?after={base64.urlsafe_b64encode(b'12').decode()}", "query.after"),
    (f"/events?after={quote('ü')}", "query.after"),
    # dates
    (f"{HISTORY}?since=yesterday", "query.since"),
    (f"{HISTORY}?since=2025-13-01", "query.since"),
    (f"{HISTORY}?until=2025-07-07T25:00:00Z", "query.until"),
    (f"{HISTORY}?until=9999-12-31T23:59:59-05:00", "query.until"),  # past year 9999 in UTC
    ("/events?since=0001-01-01T00:00:00%2B05:00", "query.since"),  # before year 1 in UTC
    ("/events?since=%27%20OR%201=1", "query.since"),
    # filters
    ("/events?status=settled", "query.status"),
    ("/events?status=" + "s" * 33, "query.status"),
    ("/events?provider=RAZORPAY", "query.provider"),
    ("/events?provider=razorpay%27--", "query.provider"),
    ("/payments/pay_014?provider=" + "p" * 33, "query.provider"),
    (f"{HISTORY}?event_type=payment.captured%00", "query.event_type"),
    (f"{HISTORY}?event_type=" + "t" * 256, "query.event_type"),
]


@pytest.mark.parametrize(("path", "parameter"), INVALID)
def test_malformed_parameters_are_422_validation_error_naming_the_parameter(
    client: TestClient, path: str, parameter: str
) -> None:
    response = client.get(path)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (set(error), error["code"]) == ({"code", "message"}, "validation_error")
    assert error["message"].startswith(parameter), error["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/payments/" + "p" * 255,
        f"{HISTORY}?limit=1&limit=1000",
        f"{HISTORY}?since=2025-07-07",
        f"{HISTORY}?since=1751885965",
        f"/events?after={paging.encode(paging.FEED, 2**63 - 1)}",
        f"{HISTORY}?after={cursor('h', '9999-12-31T23:59:59.999999+00:00', 0)}",
        f"{HISTORY}?after={cursor('h', '0001-01-01T00:00:00+00:00', 0)}",
        f"{HISTORY}?since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59.999999Z",
    ],
)
def test_edge_values_inside_the_limits_are_accepted(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code in (200, 404), response.text


HOSTILE = [
    "' OR '1'='1",
    "pay_014'; DROP TABLE webhook_events;--",
    'pay_014" OR 1=1 --',
    "1 UNION SELECT raw_body FROM webhook_events",
    "../../../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "<script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/a}",
    "{{7*7}}",
    "%",
    "%ff%fe",
    "%ed%a0%80",  # an encoded UTF-16 surrogate
    "\u202epay_014",
    "\U0001f4b3",
    "x" * 5000,
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_strings_in_paths_and_queries_never_reach_a_500(
    client: TestClient, database_url: str, hostile: str
) -> None:
    body, headers = razorpay_delivery(razorpay_event(event_id="evt_auth_014", payment_id="pay_014"))
    assert client.post("/webhooks/razorpay", content=body, headers=headers).status_code == 200
    value = quote(hostile, safe="%")
    paths = [
        f"/payments/{value}",
        f"/payments/{value}/events",
        f"/payments/pay_014?provider={value}",
        f"/events/razorpay/{value}",
        f"/events/{value}/evt_auth_014",
        *(
            f"{HISTORY}?{name}={value}"
            for name in ("event_type", "provider", "after", "since", "until", "limit")
        ),
        *(
            f"/events?{name}={value}"
            for name in ("event_type", "provider", "status", "after", "since", "until")
        ),
    ]

    answers = {path: client.get(path) for path in paths}

    for path, answer in answers.items():
        assert answer.status_code in (200, 404, 422), (path, answer.status_code, answer.text)
        if answer.status_code != 200:
            assert set(answer.json()["error"]) == {"code", "message"}
        assert "set-cookie" not in answer.headers
    # The one real event is still there, and nothing else is.
    engine = create_engine(normalise_url(database_url))
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Event)).scalar_one() == 1
    engine.dispose()
    assert client.get("/payments/pay_014").json()["status"] == "authorized"
