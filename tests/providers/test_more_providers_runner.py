"""test_runner.py --provider {adyen,gocardless,paddle,square,checkout,mercadopago,cashfree} against a
live server: every case in each table must pass."""

from collections.abc import Callable

import pytest

import test_runner
from tests.conftest import LiveServer

PROVIDERS = ("adyen", "gocardless", "paddle", "square", "checkout", "mercadopago", "cashfree")
SETTING = {
    "adyen": "ADYEN_HMAC_KEY",
    "gocardless": "GOCARDLESS_WEBHOOK_SECRET",
    "paddle": "PADDLE_WEBHOOK_SECRET",
    "square": "SQUARE_SIGNATURE_KEY",
    "checkout": "CHECKOUT_WEBHOOK_SECRET",
    "mercadopago": "MERCADOPAGO_WEBHOOK_SECRET",
    "cashfree": "CASHFREE_CLIENT_SECRET",
}


def test_runner_passes_for_every_new_provider(
    database_url: str, live_server_factory: Callable[..., LiveServer], capsys: pytest.CaptureFixture[str]
) -> None:
    env = {SETTING[name]: test_runner.DEFAULT_SECRETS[name] for name in PROVIDERS}
    # Square signs the URL it posts to: the server's setting and the runner's --square-url agree.
    square_url = ["--square-url", "https://payments.example.com/webhooks/square"]
    server = live_server_factory(
        {"DATABASE_URL": database_url, **env, "SQUARE_NOTIFICATION_URL": square_url[1]}
    )

    for provider in PROVIDERS:
        extra = square_url if provider == "square" else []
        assert test_runner.main(["--url", server.url, "--provider", provider, *extra]) == 0, (
            capsys.readouterr().out
        )
    # A second run against the same database: its events are new too (per-run id suffix).
    assert test_runner.main(["--url", server.url, "--provider", "gocardless"]) == 0, capsys.readouterr().out
    assert "FAIL" not in capsys.readouterr().out
