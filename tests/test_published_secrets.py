"""Production refuses every secret, webhook id and token this repository publishes, and tokens too short to
guard anything; development falls back to the public Razorpay secret only while nothing is configured,
and says so at start-up in one warning line."""

import re
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

import test_runner
from config import CREDENTIAL_SETTINGS, Settings
from tests.conftest import ROOT, LiveServer

CREDENTIALS = CREDENTIAL_SETTINGS
REAL_SECRET = "rzp_live_" + secrets.token_hex(16)
REAL_TOKEN = secrets.token_urlsafe(24)

# Where a value of a credential setting is written: `SETTING=a,b`, a recipe's `${SECRET:-value}` or
# `SECRET=value`, an openssl key or a command-line option, and anything shaped like a provider's secret.
ITEM = r"(?:<[^>]*>|[^\s,`'\"<>()|;]+)"
ASSIGNED = re.compile(rf"\b(?:{'|'.join(CREDENTIALS.values())})=({ITEM}(?:,{ITEM})*)")
SHELL_DEFAULT = re.compile(r"\$\{(?:SECRET|WEBHOOK_ID|TOKEN):-([^}]+)\}")
SHELL_ASSIGNED = re.compile(r"^\s*(?:SECRET|WEBHOOK_ID|TOKEN)=([^\s$`'\"]+)", re.MULTILINE)
OPTION = re.compile(r"(?:-hmac|--secret|--token)\s+([^\s\"'$|\]]+)")
SHAPED = re.compile(r"\b(?:whsec|sk_test|sk_live|rzp_test|rzp_live)_[A-Za-z0-9_+/=]+")
PUBLISHED_FILES = ("README.md", "RELIABILITY.md", "BENCHMARKS.md", "CHANGELOG.md", "docs/*.md")
PUBLISHED_FILES += ("test_runner.py",)


def is_placeholder(value: str) -> bool:
    return not value or value.startswith(("<", "$")) or "..." in value


def published_values(text: str) -> set[str]:
    found: set[str] = set()
    for pattern in (ASSIGNED, SHELL_DEFAULT, SHELL_ASSIGNED, OPTION, SHAPED):
        for match in pattern.finditer(text):
            found.update(part.strip() for part in match[1 if pattern.groups else 0].split(","))
    return {value for value in found if not is_placeholder(value)}


def runner_help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        test_runner.main(["--help"])
    return capsys.readouterr().out


def everything_published(capsys: pytest.CaptureFixture[str]) -> set[str]:
    texts = [path.read_text() for pattern in PUBLISHED_FILES for path in sorted(ROOT.glob(pattern))]
    # The help's option text only: argparse's metavars (`--secret SECRET`) are not values.
    help_text = runner_help(capsys).split("options:", 1)[1]
    # The runner's defaults are published by its help, however argparse wraps them.
    return (
        set().union(*map(published_values, texts))
        | {value for value in published_values(help_text.replace("--secret SECRET", "")) if value != "TOKEN"}
        | set(test_runner.DEFAULT_SECRETS.values())
    )


def production(**overrides: list[str]) -> Settings:
    values: dict[str, list[str]] = {"razorpay_webhook_secret": [REAL_SECRET], "api_tokens": [REAL_TOKEN]}
    return Settings(app_env="production", console_session_secret=REAL_TOKEN * 2, **(values | overrides))


def test_the_scan_finds_what_the_repository_publishes(capsys: pytest.CaptureFixture[str]) -> None:
    found = everything_published(capsys)

    assert {"test_secret", "whsec_test_secret", "sk_test_secret", "WEBHOOK_ID", "tok_new"} <= found
    assert set(test_runner.DEFAULT_SECRETS.values()) <= found
    assert "whsec_..." not in found


def test_production_refuses_every_published_value_in_every_credential_setting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    accepted = []
    for value in sorted(everything_published(capsys)):
        for field, env_name in CREDENTIALS.items():
            try:
                # Beside a real value too: one published value in a rotation list is enough to refuse.
                production(**{field: [REAL_TOKEN + "-real", value]})
            except ValidationError as refused:
                assert env_name in str(refused), (env_name, value)
            else:
                accepted.append(f"{env_name}={value}")

    assert accepted == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stripe_webhook_secret", "whsec_test_secret"),
        ("paystack_secret_key", "sk_test_secret"),
        ("paypal_webhook_id", "WEBHOOK_ID"),
        ("standard_webhook_secret", test_runner.DEFAULT_SECRETS["standard"]),
        ("api_tokens", "test_secret"),
        ("api_tokens", "x"),
        ("api_tokens", "a" * 15),
    ],
)
def test_the_reviews_production_probes_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=CREDENTIALS[field]):
        production(**{field: [value]})


def test_a_token_of_the_documented_minimum_length_is_accepted() -> None:
    assert production(api_tokens=["a" * 16]).api_tokens == ["a" * 16]


# --- development: the public Razorpay secret, only while nothing is configured ------------------------------


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*CREDENTIALS.values(), "APP_ENV"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "razorpay"),
    [
        ({}, ["test_secret"]),
        ({"RAZORPAY_WEBHOOK_SECRET": ""}, []),
        ({"RAZORPAY_WEBHOOK_SECRET": " , "}, []),
        ({"STRIPE_WEBHOOK_SECRET": "whsec_mine"}, []),
        ({"PAYPAL_WEBHOOK_ID": "MYWEBHOOK"}, []),
        ({"RAZORPAY_WEBHOOK_SECRET": "mine"}, ["mine"]),
    ],
)
def test_development_falls_back_only_when_nothing_is_configured(
    bare_environment: pytest.MonkeyPatch, env: dict[str, str], razorpay: list[str]
) -> None:
    for name, value in env.items():
        bare_environment.setenv(name, value)

    assert Settings().razorpay_webhook_secret == razorpay


@pytest.mark.parametrize(
    ("env", "warned"),
    [
        ({}, ["RAZORPAY_WEBHOOK_SECRET"]),
        ({"STRIPE_WEBHOOK_SECRET": "whsec_test_secret"}, ["STRIPE_WEBHOOK_SECRET"]),
        ({"RAZORPAY_WEBHOOK_SECRET": "a-real-secret"}, []),
    ],
)
def test_start_up_warns_once_naming_the_setting_that_holds_a_public_secret(
    bare_environment: pytest.MonkeyPatch,
    tmp_path: Path,
    live_server_factory: Callable[..., LiveServer],
    env: dict[str, str],
    warned: list[str],
) -> None:
    server = live_server_factory({"DATABASE_URL": f"sqlite:///{tmp_path / 'webhooks.db'}", **env})
    server.stop()
    lines = [line for line in server.read_log().splitlines() if "PUBLIC test secret" in line]

    assert [line.split(": a PUBLIC", 1)[0].rsplit(" ", 1)[-1] for line in lines] == warned
    assert all("WARNING" in line for line in lines)
