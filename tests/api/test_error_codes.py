"""Every answer is documented: each error code the service can give is in the README's troubleshooting
table, the operations guide and /docs (the read API's in docs/read-api.md too), and no path redirects:
every route with a trailing slash answers itself, with a documented code or, for deliveries, a store."""

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Route

import main
from api import paging, reads
from errors import ApiError, SignatureError
from main import create_app
from tests.conftest import ROOT, make_settings, without_hot_routes
from tests.support import razorpay_delivery, razorpay_event

TOKEN = "error-codes-token-0001"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SAMPLES = {"provider": "razorpay", "payment_id": "pay_014", "event_id": "evt_auth_014", "name": "console.css"}
READ_CODES = {"unauthorized", "validation_error", "payment_not_found", "payment_ambiguous", "event_not_found"}


def subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)


def answered_codes() -> set[str]:
    """Every code the service can answer with, from the code itself."""
    classes = [*subclasses(ApiError), *subclasses(SignatureError)]
    return (
        {cls.code for cls in classes}
        | {"validation_error", "internal_error", "http_error"}
        | set(main.HTTP_ERROR_CODES.values())
    )


def documented(path: str, heading: str | None = None) -> set[str]:
    """The codes in the backticks of a document, or of one of its sections."""
    text = (ROOT / path).read_text()
    if heading is not None:
        text = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`([a-z_]+)`", text))


def test_the_code_list_is_what_the_service_answers() -> None:
    # Errors defined beside their routes are listed too (their modules are imported above).
    assert {reads.PaymentAmbiguous, paging.InvalidCursor} <= set(subclasses(ApiError))
    assert {"not_found", "method_not_allowed", "internal_error", "signature_expired"} <= answered_codes()


@pytest.mark.parametrize(
    ("path", "heading"),
    [
        ("README.md", "## Troubleshooting by error code"),
        ("docs/operations.md", "## Troubleshooting by error code"),
    ],
)
def test_every_code_is_in_the_troubleshooting_tables(path: str, heading: str) -> None:
    assert answered_codes() - documented(path, heading) == set()


def test_every_read_code_and_any_routes_codes_are_in_the_read_api_guide() -> None:
    codes = READ_CODES | {"storage_unavailable", "not_found", "method_not_allowed", "internal_error"}
    assert codes - documented("docs/read-api.md") == set()


def test_every_code_is_in_the_openapi_document() -> None:
    spec = str(create_app().openapi())
    # client_disconnected only labels logs and metrics: the client has gone, nobody receives it.
    codes = answered_codes() - {"client_disconnected"}
    assert {code for code in codes if not re.search(rf"(?<![a-z_]){code}(?![a-z_])", spec)} == set()


# --- no redirects; a trailing slash is answered, never redirected ------------------------------------------


@pytest.fixture(params=["hot_route", "router"])
def client(request: pytest.FixtureRequest, database_url: str) -> Iterator[TestClient]:
    app = create_app(make_settings(database_url, api_tokens=[TOKEN]))
    if request.param == "router":
        without_hot_routes(app)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


def every_route(app: Any) -> Iterator[tuple[str, str]]:
    """(method, concrete path) for every route the app serves, included routers' too."""
    routes = list(app.routes)
    while routes:
        route = routes.pop(0)
        if hasattr(route, "original_router"):  # FastAPI's included router
            routes += route.original_router.routes
        elif isinstance(route, APIRoute | Route):
            path = route.path_format.format(**SAMPLES)
            for method in sorted(set(route.methods or ["GET"]) - {"HEAD"}):  # HEAD answers as GET, bodiless
                yield method, path


def test_the_walk_covers_every_route() -> None:
    paths = {path for _, path in every_route(create_app())}
    assert {"/webhooks/razorpay", "/payments/pay_014/events", "/events", "/metrics", "/docs"} <= paths


def test_every_route_with_a_trailing_slash_answers_without_a_redirect(client: TestClient) -> None:
    documented_codes = documented("README.md", "## Troubleshooting by error code")
    answers = {}
    for method, path in every_route(client.app):
        for headers in ({}, AUTH):
            body, signed = razorpay_delivery(razorpay_event())
            response = client.request(method, path.rstrip("/") + "/", content=body, headers=headers | signed)
            if path.startswith("/console/") and response.status_code == 303:
                # The console's HTML pages send a browser without a session to sign in: a 303 to the
                # console's own login page, never to a URL built from the request.
                assert response.headers["location"].startswith("/console/login")
                continue
            code = response.json()["error"]["code"] if response.status_code >= 400 else None
            answers[method, path + "/", bool(headers)] = (response.status_code, code)

    assert {key: answer for key, answer in answers.items() if 300 <= answer[0] < 400} == {}
    assert {
        key: answer for key, answer in answers.items() if answer[1] not in {None, *documented_codes}
    } == {}


@pytest.mark.parametrize("path", ["/webhooks/razorpay/", "/webhook/payments/"])
def test_a_delivery_to_a_url_with_a_trailing_slash_is_stored(client: TestClient, path: str) -> None:
    body, headers = razorpay_delivery(razorpay_event(event_id="evt_slash_url"))

    response = client.post(path, content=body, headers=headers | {"Host": "evil.example"})

    assert "location" not in response.headers
    assert response.json() == {"status": "processed", "event_id": "evt_slash_url"}
