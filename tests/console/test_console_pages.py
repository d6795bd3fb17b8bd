"""The console's pages over real signed deliveries, on both databases: what they show, what they escape,
who may see them."""

import re
import time
from collections.abc import Callable
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from pydantic import ValidationError
from sqlalchemy import create_engine

from config import Settings
from console.routes import CONTENT_SECURITY_POLICY
from console.session import COOKIE, fingerprint
from database import normalise_url
from tests.console.stories import HOSTILE, hostile_event, out_of_order_story
from tests.support import an_event, razorpay_delivery, razorpay_event, store_directly

SECRET = "console-test-secret-0123456789abcdef"


def deliver(client: TestClient, payload: dict[str, Any] | bytes) -> None:
    body, headers = razorpay_delivery(payload)
    response = client.post("/webhooks/razorpay", content=body, headers=headers)
    assert response.status_code == 200, response.text


def rows_of(html: str) -> list[str]:
    """Each table row's text, tags removed, spaces collapsed."""
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", html, flags=re.S)
    return [" ".join(unescape(re.sub(r"<[^>]+>", " ", row)).split()) for row in rows]


@pytest.fixture
def signed_in(client_factory: Callable[..., TestClient]) -> TestClient:
    client = client_factory(api_tokens=["ops-token"], console_session_secret=SECRET)
    response = client.post("/console/login", data={"token": "ops-token"}, follow_redirects=False)
    assert response.status_code == 303
    return client


def test_the_timeline_shows_the_state_after_each_event_and_marks_the_late_one(client: TestClient) -> None:
    for payload in out_of_order_story("pay_story"):
        deliver(client, payload)

    response = client.get("/console/payments/pay_story?provider=razorpay")

    assert response.status_code == 200
    rows = rows_of(response.text)[1:]
    assert [row.split()[1] for row in rows] == ["payment.authorized", "payment.captured", "refund.processed"]
    assert ["Out of order" in row for row in rows] == [True, False, False]
    assert ["No change: already captured" in row for row in rows] == [True, False, False]
    states = [re.search(r"UTC [-0-9. a-z]+ (\w+) 50\.00 INR", row) for row in rows]
    assert [match.group(1) if match else None for match in states] == ["captured", "captured", "refunded"]
    assert 'id="current-status"><span class="status s-refunded">refunded' in response.text

    arrival = rows_of(client.get("/console/payments/pay_story?provider=razorpay&order=arrival").text)[1:]
    assert [row.split()[1] for row in arrival] == [
        "payment.captured",
        "payment.authorized",
        "refund.processed",
    ]


def test_search_finds_a_payment_or_an_event(client: TestClient) -> None:
    deliver(client, razorpay_event(payment_id="pay_found", event_id="evt_found"))

    by_payment = client.get("/console/?q=pay_found", follow_redirects=False)
    by_event = client.get("/console/?q=evt_found", follow_redirects=False)
    nothing = client.get("/console/?q=pay_nowhere")

    assert (by_payment.status_code, by_payment.headers["location"]) == (
        303,
        "/console/payments/pay_found?provider=razorpay",
    )
    assert (by_event.status_code, by_event.headers["location"]) == (303, "/console/events/razorpay/evt_found")
    assert nothing.status_code == 404
    assert "No payment or event is stored under &#39;pay_nowhere&#39;" in nothing.text


def test_the_index_filters_pages_and_charts_the_last_day(client: TestClient) -> None:
    for n in range(52):
        deliver(
            client,
            razorpay_event(payment_id=f"pay_{n}", event_id=f"evt_feed_{n}", created_at=int(time.time())),
        )
    deliver(client, razorpay_event(event="payment.captured", payment_id="pay_c", event_id="evt_cap"))

    first = client.get("/console/")
    captured = client.get("/console/?status=captured&provider=razorpay")

    assert first.status_code == 200
    assert len(rows_of(first.text)) == 1 + 50
    older = re.search(r'href="(/console/\?before=\d+)" rel="next"', first.text)
    assert older is not None
    assert len(rows_of(client.get(unescape(older.group(1))).text)) == 1 + 3
    in_range = client.get("/console/?since=2000-01-01T00:00&until=2100-01-01T00:00")
    assert len(rows_of(in_range.text)) == 1 + 50
    older = re.search(r'href="(/console/\?since=[^"]+&amp;before=\d+)" rel="next"', in_range.text)
    assert older is not None
    rest = rows_of(client.get(unescape(older.group(1))).text)[1:]
    assert len(rest) == 3
    assert [row.split()[-1] for row in rest] == ["evt_feed_2", "evt_feed_1", "evt_feed_0"]
    assert [row.split()[4] for row in rows_of(captured.text)[1:]] == ["payment.captured"]
    assert 'class="bar p-razorpay"' in first.text
    assert "razorpay · 53" in first.text


def test_the_event_page_shows_the_body_and_redacts_the_signature(client: TestClient) -> None:
    payload = razorpay_event(payment_id="pay_body", event_id="evt_body")
    body, headers = razorpay_delivery(payload)
    client.post("/webhooks/razorpay", content=body, headers=headers)

    pretty = client.get("/console/events/razorpay/evt_body")
    exact = client.get("/console/events/razorpay/evt_body?body=exact")

    assert pretty.status_code == 200
    assert headers["X-Razorpay-Signature"] not in pretty.text
    assert "redacted (64 characters)" in pretty.text
    assert "&#34;payment.authorized&#34;" in pretty.text and "\n  &#34;event&#34;" in pretty.text
    assert (
        unescape(re.search(r'<pre class="body"[^>]*>(.*?)</pre>', exact.text, re.S).group(1)) == body.decode()
    )


def test_payload_text_is_escaped_everywhere(client: TestClient) -> None:
    payload = hostile_event()
    deliver(client, payload)
    event_id, payment_id = payload["id"], payload["payload"]["payment"]["entity"]["id"]

    pages = [
        client.get("/console/"),
        client.get("/console/payments/" + _path(payment_id) + "?provider=razorpay"),
        client.get("/console/events/razorpay/" + _path(event_id)),
        client.get("/console/events/razorpay/" + _path(event_id) + "?body=exact"),
        client.get("/console/?q=" + _path(HOSTILE)),
    ]

    assert [page.status_code for page in pages] == [200, 200, 200, 200, 404]
    for page in pages:
        assert "<script>alert" not in page.text
        assert '"onmouseover' not in page.text
        assert page.text.count("<script") == 1  # our own console.js, nothing else
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;onmouseover=alert(2)" in pages[1].text


def _path(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def test_an_unknown_payment_or_event_is_a_404_page(client: TestClient) -> None:
    for url in (
        "/console/payments/pay_missing",
        "/console/events/razorpay/evt_missing",
        "/console/payments/a%00b",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.headers["content-type"].startswith("text/html")


# --- access ---------------------------------------------------------------------------------------------


def test_with_tokens_set_the_console_asks_for_one(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(api_tokens=["ops-token"], console_session_secret=SECRET)

    unsigned = client.get("/console/payments/pay_1?provider=razorpay", follow_redirects=False)
    form = client.get(unsigned.headers["location"])
    wrong = client.post("/console/login", data={"token": "guess"}, follow_redirects=False)
    right = client.post(
        "/console/login",
        data={"token": "ops-token", "next": "/console/payments/pay_1"},
        follow_redirects=False,
    )

    assert (unsigned.status_code, unsigned.headers["location"]) == (
        303,
        "/console/login?next=%2Fconsole%2Fpayments%2Fpay_1%3Fprovider%3Drazorpay",
    )
    assert form.status_code == 200 and 'name="token"' in form.text
    assert wrong.status_code == 401 and 'name="token"' in wrong.text and "not valid" in wrong.text
    assert COOKIE not in wrong.headers.get("set-cookie", "")
    assert (right.status_code, right.headers["location"]) == (303, "/console/payments/pay_1")
    cookie = right.headers["set-cookie"]
    assert all(part in cookie for part in ("HttpOnly", "SameSite=strict", "Max-Age=28800", "Path=/console"))
    assert "Secure" not in cookie
    assert client.get("/console/", follow_redirects=False).status_code == 200


def test_the_cookie_is_secure_under_https(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(api_tokens=["ops-token"], console_session_secret=SECRET)
    client.base_url = client.base_url.copy_with(scheme="https")

    response = client.post("/console/login", data={"token": "ops-token"}, follow_redirects=False)

    assert "Secure" in response.headers["set-cookie"]


def test_login_goes_only_to_console_pages(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(api_tokens=["ops-token"], console_session_secret=SECRET)
    for target in ("https://evil.example/", "//evil.example/", "/console/\\evil", "/docs"):
        response = client.post(
            "/console/login", data={"token": "ops-token", "next": target}, follow_redirects=False
        )
        assert response.headers["location"] == "/console/", target


def test_sign_out_needs_the_csrf_token(signed_in: TestClient) -> None:
    page = signed_in.get("/console/")
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert csrf is not None

    forged = signed_in.post("/console/logout", data={"csrf_token": "0" * 64}, follow_redirects=False)
    missing = signed_in.post("/console/logout", follow_redirects=False)
    other_site = signed_in.post(
        "/console/logout",
        data={"csrf_token": csrf.group(1)},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert [forged.status_code, missing.status_code, other_site.status_code] == [403, 403, 403]
    assert signed_in.get("/console/", follow_redirects=False).status_code == 200

    out = signed_in.post("/console/logout", data={"csrf_token": csrf.group(1)}, follow_redirects=False)
    assert (out.status_code, out.headers["location"]) == (303, "/console/login")
    assert signed_in.get("/console/", follow_redirects=False).status_code == 303


def test_a_session_ends_when_it_expires_or_its_token_is_removed(
    client_factory: Callable[..., TestClient],
) -> None:
    class Earlier(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 9 * 3600

    expired = URLSafeTimedSerializer(SECRET, salt="console-session", signer=Earlier).dumps(
        {"sid": "s", "tf": fingerprint("ops-token")}
    )
    current = URLSafeTimedSerializer(SECRET, salt="console-session").dumps(
        {"sid": "s", "tf": fingerprint("old")}
    )
    client = client_factory(api_tokens=["ops-token"], console_session_secret=SECRET)

    for cookie in (expired, current, current + "x"):
        client.cookies.set(COOKIE, cookie, path="/console")
        assert client.get("/console/", follow_redirects=False).status_code == 303
        client.cookies.clear()


def test_production_refuses_to_start_without_a_console_session_secret() -> None:
    with pytest.raises(ValidationError, match="CONSOLE_SESSION_SECRET"):
        production = {"razorpay_webhook_secret": ["a-real-secret"], "api_tokens": ["a-read-token-of-16+"]}
        Settings(app_env="production", **production)
    with pytest.raises(ValidationError, match="console_session_secret"):
        Settings(console_session_secret="short")


@pytest.mark.parametrize(
    ("query", "status_code"),
    [
        ("status=bogus", 422),
        ("since=yesterday", 422),
        ("event_type=a%00b", 422),
        ("q=" + "x" * 300, 422),
        ("before=%C2%B2", 200),
        ("before=99999999999999999999999", 200),
    ],
)
def test_a_bad_filter_is_said_on_the_page(client: TestClient, query: str, status_code: int) -> None:
    response = client.get(f"/console/?{query}")

    assert response.status_code == status_code
    assert response.headers["content-type"].startswith("text/html")


def test_duplicates_collapse_into_a_delivery_count_with_first_and_last_times(client: TestClient) -> None:
    story = out_of_order_story("pay_counted")
    for payload in story:
        deliver(client, payload)
    for _ in range(2):
        deliver(client, story[0])  # the capture, delivered twice more

    timeline = rows_of(client.get("/console/payments/pay_counted?provider=razorpay").text)[1:]
    page = client.get("/console/events/razorpay/pay_counted_cap")

    captured = next(row for row in timeline if row.split()[1] == "payment.captured")
    assert re.search(r" 3 first \d{4}-\d\d-\d\d [0-9:]+ UTC last \d{4}-\d\d-\d\d [0-9:]+ UTC ", captured)
    others = [row for row in timeline if row is not captured]
    assert all(re.search(r" 1 \d{4}-\d\d-\d\d [0-9:]+ UTC pay_counted_", row) for row in others), others
    deliveries = re.search(r'<dd id="deliveries">(.*?)</dd>', page.text, re.S)
    assert deliveries is not None
    assert " ".join(re.sub(r"<[^>]+>", " ", deliveries.group(1)).split()).startswith("3 first ")
    detail = client.get("/events/razorpay/pay_counted_cap").json()
    assert detail["last_delivered_at"].replace("Z", "")[:19].replace("T", " ") in captured


def test_a_recovered_event_shows_no_delivery_until_its_webhook(client: TestClient, database_url: str) -> None:
    engine = create_engine(normalise_url(database_url))
    with engine.begin() as connection:
        store_directly(
            connection, [an_event(event_id="evt_recovered", payment_id="pay_rec", origin="recovery")]
        )
    engine.dispose()

    page = client.get("/console/events/razorpay/evt_recovered").text
    [row] = rows_of(client.get("/console/payments/pay_rec?provider=razorpay").text)[1:]

    assert "none (recovered)" in page and "recovered from the provider" in page
    assert "none (recovered)" in row
