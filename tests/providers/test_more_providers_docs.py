"""The by-hand recipes of docs/providers.md for Adyen, GoCardless, Paddle, Square, Checkout.com, Mercado
Pago and Cashfree, run as written against a live server (as tests/providers/test_providers_docs.py does
for the others)."""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer
from tests.providers.test_providers_docs import _path, recipes, run

# Setting, and the value given to the recipe as SECRET.
SECRETS = {
    "adyen": ("ADYEN_HMAC_KEY", "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"),
    "gocardless": ("GOCARDLESS_WEBHOOK_SECRET", "docs_gocardless_secret"),
    "paddle": ("PADDLE_WEBHOOK_SECRET", "pdl_ntfset_docs_secret"),
    "square": ("SQUARE_SIGNATURE_KEY", "docs_square_key"),
    "checkout": ("CHECKOUT_WEBHOOK_SECRET", "docs_checkout_secret"),
    "mercadopago": ("MERCADOPAGO_WEBHOOK_SECRET", "docs_mercadopago_secret"),
    "cashfree": ("CASHFREE_CLIENT_SECRET", "docs_cashfree_secret"),
}
NOTIFICATION_URL = "https://docs.example.com/webhooks/square"
# What each recipe prints when the delivery is stored.
ACCEPTED = {"adyen": "[accepted]", "gocardless": "204"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    missing = [tool for tool in ("openssl", "curl", "bash") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the recipes need {', '.join(missing)}")
    workdir: Path = tmp_path_factory.mktemp("more-recipes")
    env = {name: secret for name, secret in SECRETS.values()}
    env |= {
        "DATABASE_URL": f"sqlite:///{workdir / 'recipes.db'}",
        "SQUARE_NOTIFICATION_URL": NOTIFICATION_URL,
    }
    live = LiveServer(env).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.mark.parametrize("provider", sorted(SECRETS))
def test_recipe_signs_a_delivery_the_receiver_accepts(
    server: LiveServer, tmp_path: Path, provider: str
) -> None:
    env = {
        "PATH": _path(),
        "URL": server.url,
        "SECRET": SECRETS[provider][1],
        "NOTIFICATION_URL": NOTIFICATION_URL,
    }

    output = run(recipes()[provider], cwd=tmp_path, env=env).strip()

    if provider in ACCEPTED:
        assert output == ACCEPTED[provider]
    else:
        assert json.loads(output)["status"] == "processed", output


@pytest.mark.parametrize("provider", sorted(SECRETS))
def test_recipe_with_the_wrong_secret_is_refused(server: LiveServer, tmp_path: Path, provider: str) -> None:
    wrong = "ab" * 32 if provider == "adyen" else "not_the_secret"
    env = {"PATH": _path(), "URL": server.url, "SECRET": wrong, "NOTIFICATION_URL": NOTIFICATION_URL}

    output = run(recipes()[provider], cwd=tmp_path, env=env).strip()

    if provider == "gocardless":
        assert output == "498"
    else:
        assert json.loads(output)["error"]["code"] == "signature_invalid"
