"""The by-hand signing recipes in docs/providers.md, run as written against a live server, so they cannot rot.

Each recipe is the shell block after its `<!-- recipe: name -->` marker. Skipped where openssl, curl or
bash is not installed.
"""

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, LiveServer

DOCS = ROOT / "docs" / "providers.md"
RECIPE = re.compile(r"<!-- recipe: (?P<name>[\w-]+) -->\s*```sh\n(?P<script>.*?)```", re.DOTALL)
SECRETS = {
    "razorpay": ("RAZORPAY_WEBHOOK_SECRET", "docs_razorpay_secret"),
    "stripe": ("STRIPE_WEBHOOK_SECRET", "whsec_docs_stripe_secret"),
    "standard": ("STANDARD_WEBHOOK_SECRET", "whsec_ZG9jcy1zdGFuZGFyZC13ZWJob29rcy1rZXk="),
    "paystack": ("PAYSTACK_SECRET_KEY", "sk_test_docs_paystack"),
}
# Recipes of the providers added later, run by tests/providers/test_more_providers_docs.py.
MORE_RECIPES = ("adyen", "gocardless", "paddle", "square", "checkout", "mercadopago", "cashfree")
WEBHOOK_ID = "DOCSWEBHOOK0001"
EXPECTED_EVENT_ID = {
    "razorpay": "EvtManual001",
    "stripe": "evt_manual_1",
    "standard": "msg_manual_1",
    "paypal": "WH-MANUAL-1",
    "paystack": "sha256:",
}


def recipes() -> dict[str, str]:
    return {match["name"]: match["script"] for match in RECIPE.finditer(DOCS.read_text())}


def run(script: str, *, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    missing = [tool for tool in ("openssl", "curl", "bash") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the recipes need {', '.join(missing)}")
    workdir = tmp_path_factory.mktemp("recipes")
    # The PayPal recipe's key and certificate are made by its own first block, then pinned.
    run(recipes()["paypal-keys"], cwd=workdir, env={"PATH": _path()})
    env = {name: secret for name, secret in SECRETS.values()}
    env |= {
        "DATABASE_URL": f"sqlite:///{workdir / 'recipes.db'}",
        "PAYPAL_WEBHOOK_ID": WEBHOOK_ID,
        "PAYPAL_CERT_PATH": str(workdir / "paypal-cert.pem"),
    }
    live = LiveServer(env).start()
    try:
        yield live, workdir
    finally:
        live.stop()


def _path() -> str:
    return os.environ.get("PATH", "/usr/bin:/bin")


def test_every_provider_has_a_recipe() -> None:
    assert set(recipes()) == {
        "razorpay",
        "stripe",
        "paypal-keys",
        "paypal",
        "standard",
        "paystack",
        *MORE_RECIPES,
    }


@pytest.mark.parametrize("provider", ["razorpay", "stripe", "paypal", "standard", "paystack"])
def test_recipe_signs_a_delivery_the_receiver_accepts(server: tuple[LiveServer, Path], provider: str) -> None:
    live, workdir = server
    env = {"PATH": _path(), "URL": live.url, "WEBHOOK_ID": WEBHOOK_ID}
    if provider in SECRETS:
        env["SECRET"] = SECRETS[provider][1]

    answer = json.loads(run(recipes()[provider], cwd=workdir, env=env))

    assert answer["status"] == "processed", answer
    assert answer["event_id"].startswith(EXPECTED_EVENT_ID[provider])


def test_a_recipe_with_the_wrong_secret_is_refused(server: tuple[LiveServer, Path]) -> None:
    live, workdir = server
    env = {"PATH": _path(), "URL": live.url, "SECRET": "not_the_secret"}

    answer = json.loads(run(recipes()["razorpay"], cwd=workdir, env=env))

    assert answer["error"]["code"] == "signature_invalid"
