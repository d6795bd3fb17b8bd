"""The console in a real browser: Playwright driving Debian's Chromium against a live server, with real
signed deliveries. Screenshots land in the test's tmp dir (and in $CONSOLE_SCREENSHOTS when set)."""

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import LiveServer
from tests.console.stories import HOSTILE, hostile_event, out_of_order_story
from tests.support import razorpay_delivery, razorpay_event

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-ops-token"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's Chromium is not at /usr/bin/chromium (apt-get install -y chromium; CI installs it)"
        )
    with playwright_sync.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def server(database_url: str, live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    return live_server_factory(
        {
            "DATABASE_URL": database_url,
            "RAZORPAY_WEBHOOK_SECRET": "test_secret",
            "API_TOKENS": TOKEN,
            "CONSOLE_SESSION_SECRET": "browser-test-secret-0123456789abcdef",
        }
    )


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    opened.dialogs = dialogs
    errors: list[str] = []
    opened.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    opened.console_errors = errors
    yield opened
    context.close()


def deliver(server: LiveServer, payload: dict[str, Any]) -> None:
    body, headers = razorpay_delivery(payload)
    response = requests.post(server.url + "/webhooks/razorpay", data=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text


def sign_in(page: Any, path: str = "/console/") -> None:
    page.goto(path)
    assert page.locator("h1").inner_text() == "Sign in"
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def screenshot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if target := os.environ.get("CONSOLE_SCREENSHOTS"):
        shutil.copy(path, Path(target) / name)


def timeline_rows(page: Any) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "#timeline tbody tr",
        """rows => rows.map(row => ({
            type: row.querySelector('.type').innerText,
            state: row.querySelector('.state .status').innerText,
            notes: row.querySelector('.notes').innerText,
            deliveries: row.querySelector('.deliveries .count').innerText,
        }))""",
    )


def test_search_lands_on_the_timeline_of_an_out_of_order_payment(
    page: Any, server: LiveServer, tmp_path: Path
) -> None:
    for payload in out_of_order_story("pay_story"):
        deliver(server, payload)
    for _ in range(2):
        deliver(server, out_of_order_story("pay_story")[0])  # the capture's duplicates
    sign_in(page)

    page.get_by_label("Payment id or event id").fill("pay_story")
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/payments/pay_story?provider=razorpay")

    assert page.locator("#current-status .status").inner_text() == "refunded"
    rows = timeline_rows(page)
    assert [(row["type"], row["state"]) for row in rows] == [
        ("payment.authorized", "captured"),
        ("payment.captured", "captured"),
        ("refund.processed", "refunded"),
    ]
    assert ["Out of order" in row["notes"] for row in rows] == [True, False, False]
    assert ["No change: already captured" in row["notes"] for row in rows] == [True, False, False]
    assert [row["deliveries"] for row in rows] == ["1", "3", "1"]
    assert page.locator("time").first.get_attribute("title").startswith("Local time: ")
    screenshot(page, tmp_path, "console-timeline.png")

    page.get_by_role("link", name="Show in arrival order").click()
    assert [row["type"] for row in timeline_rows(page)] == [
        "payment.captured",
        "payment.authorized",
        "refund.processed",
    ]

    page.get_by_role("link", name="pay_story_cap").click()
    assert page.locator("#event-type").inner_text() == "payment.captured"
    assert page.locator("#deliveries .count").inner_text() == "3"
    assert "redacted (64 characters)" in page.locator("table.headers").inner_text()
    screenshot(page, tmp_path, "console-event.png")
    page.get_by_role("link", name="Show the exact bytes").click()
    body, _ = razorpay_delivery(out_of_order_story("pay_story")[0])
    assert page.locator("#raw-body").inner_text() == body.decode()
    # Our own CSS and JS load under the policy: the browser reported no violation.
    assert [error for error in page.console_errors if "Content Security Policy" in error] == []
    assert page.evaluate("getComputedStyle(document.querySelector('.skip')).position") == "absolute"


def test_script_text_in_a_payload_renders_as_text(page: Any, server: LiveServer) -> None:
    payload = hostile_event()
    deliver(server, payload)
    sign_in(page)

    page.get_by_role("link", name=payload["payload"]["payment"]["entity"]["id"]).click()
    assert HOSTILE in page.locator("h1").inner_text()
    assert HOSTILE in page.locator("#timeline .type").inner_text()
    page.get_by_role("link", name=payload["id"]).click()
    assert '"note": "<script>alert(1)</script>' in page.locator("#raw-body").inner_text()

    injected = page.evaluate(
        """() => ({
            inline: [...document.scripts].filter(s => !s.src).length,
            handlers: document.querySelectorAll('[onmouseover]').length,
        })"""
    )
    assert injected == {"inline": 0, "handlers": 0}
    page.locator("h1").hover()
    assert page.dialogs == []


def test_signing_out_needs_the_forms_csrf_token(page: Any, server: LiveServer) -> None:
    sign_in(page, "/console/payments/pay_x")
    assert page.url.endswith("/console/payments/pay_x")  # back where the sign-in started: a 404 page
    page.goto("/console/")

    page.eval_on_selector("input[name=csrf_token]", "input => { input.value = 'forged' }")
    page.get_by_role("button", name="Sign out").click()
    assert page.locator("h1").inner_text() == "Refused"

    page.goto("/console/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/login")
    page.goto("/console/")
    assert page.locator("h1").inner_text() == "Sign in"


def test_a_wrong_token_gets_the_form_again(page: Any, server: LiveServer) -> None:
    page.goto("/console/")
    page.get_by_label("API token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()

    assert page.locator("#login-error").inner_text() == "That token is not valid."
    assert page.get_by_label("API token").get_attribute("aria-invalid") == "true"


def test_narrow_screens_and_the_keyboard(browser: Any, server: LiveServer) -> None:
    for n in range(3):
        deliver(server, razorpay_event(payment_id=f"pay_narrow_{n}", event_id=f"evt_narrow_{n}"))
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=server.url)
    page = context.new_page()
    try:
        sign_in(page)
        for path in ("/console/", "/console/payments/pay_narrow_0", "/console/events/razorpay/evt_narrow_0"):
            page.goto(path)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, path

        page.goto("/console/")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Enter")
        page.get_by_label("Payment id or event id").focus()
        page.keyboard.type("evt_narrow_1")
        page.keyboard.press("Enter")
        page.wait_for_url("**/console/events/razorpay/evt_narrow_1")
    finally:
        context.close()
