"""test_runner.py against a live server, per provider: every case in its table must pass."""

import base64
from collections.abc import Callable
from pathlib import Path

import pytest

import test_runner
from tests.conftest import LiveServer


def test_runner_passes_against_a_live_server_for_every_provider(
    database_url: str,
    live_server_factory: Callable[..., LiveServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    test_runner.make_paypal_cert(tmp_path)
    server = live_server_factory(
        {
            "DATABASE_URL": database_url,
            "RAZORPAY_WEBHOOK_SECRET": test_runner.DEFAULT_SECRETS["razorpay"],
            "STRIPE_WEBHOOK_SECRET": test_runner.DEFAULT_SECRETS["stripe"],
            "STANDARD_WEBHOOK_SECRET": test_runner.DEFAULT_SECRETS["standard"],
            "PAYSTACK_SECRET_KEY": test_runner.DEFAULT_SECRETS["paystack"],
            "PAYPAL_WEBHOOK_ID": "WH_TEST_ID",
            "PAYPAL_CERT_PATH": str(tmp_path / "paypal-cert.pem"),
        }
    )
    for provider in ("razorpay", "stripe", "standard", "paystack"):
        assert test_runner.main(["--url", server.url, "--provider", provider]) == 0, capsys.readouterr().out
    paypal = [
        "--provider",
        "paypal",
        "--secret",
        "WH_TEST_ID",
        "--paypal-key",
        str(tmp_path / "paypal-key.pem"),
    ]
    assert test_runner.main(["--url", server.url, *paypal]) == 0, capsys.readouterr().out
    # Twice against the same database: a second run's events are new too (per-run id suffix).
    assert test_runner.main(["--url", server.url]) == 0, capsys.readouterr().out
    assert "FAIL" not in capsys.readouterr().out


def test_runner_fails_when_the_server_disagrees(
    live_server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # The wrong secret: every delivery is refused, so the table must show failures and exit 1.
    assert test_runner.main(["--url", live_server.url, "--secret", "not_the_secret"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_tamper_keeps_the_format_but_changes_the_value() -> None:
    for value in ("ab" * 32, base64.b64encode(bytes(range(32))).decode(), "t=1,v1=" + "0" * 64):
        tampered = test_runner.tamper(value)
        assert tampered != value and len(tampered) == len(value)
