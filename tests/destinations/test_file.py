"""The destinations file: what validates, and a refusal that names the entry and the field (and never
quotes a secret). An invalid file stops start-up."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from destinations import file
from errors import DestinationsFileInvalid
from main import create_app
from tests.conftest import make_settings
from tests.destinations.conftest import SECRET


def write(tmp_path: Path, document: Any) -> str:
    path = tmp_path / "destinations.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def entry(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {"name": "orders", "url": "http://127.0.0.1:9000/hooks", "secret": SECRET}
    value.update(changes)
    return {key: item for key, item in value.items() if item is not None}


def test_a_complete_file_loads_with_its_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "destinations": [
                entry(
                    providers=["razorpay"],
                    event_types=["payment.*"],
                    statuses=["captured"],
                    rate_per_second=50,
                ),
                entry(
                    name="ledger", secret=None, secret_env="LEDGER_SECRET", url="https://ledger.internal/x"
                ),
            ]
        },
    )
    orders, ledger = file.load(path, environ={"LEDGER_SECRET": SECRET})
    assert (orders.max_in_flight, orders.timeout_seconds, orders.max_attempts) == (8, 5.0, 12)
    assert (orders.max_age_seconds, orders.ordered) == (259_200, True)
    assert ledger.host == "ledger.internal"
    assert ledger.key == orders.key
    assert orders.matches(provider="razorpay", event_type="payment.captured", status="captured")
    assert not orders.matches(provider="razorpay", event_type="refund.created", status="captured")
    assert not orders.matches(provider="stripe", event_type="payment.captured", status="captured")
    assert not orders.matches(provider="razorpay", event_type="payment.captured", status="refunded")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([entry(name="Orders!")], "destinations[0] (Orders!): name: String should match pattern"),
        ([entry(url="ftp://x")], "destinations[0] (orders): url: must be an http:// or https:// URL"),
        ([entry(secret=None)], "destinations[0] (orders): give exactly one of secret and secret_env"),
        ([entry(secret_env="X")], "destinations[0] (orders): give exactly one of secret and secret_env"),
        (
            [entry(secret="whsec_!!!")],
            "destinations[0] (orders): secret: a Standard Webhooks secret must be base64",
        ),
        (
            [entry(secret=None, secret_env="UNSET_VAR")],
            "destinations[0] (orders): secret_env: UNSET_VAR is not set",
        ),
        ([entry(), entry()], "destination name 'orders' is declared twice"),
        (
            [entry(), entry(name="b", max_attempts=0)],
            "destinations[1] (b): max_attempts: Input should be greater",
        ),
        ([entry(timeout="5")], "destinations[0] (orders): timeout: Extra inputs are not permitted"),
    ],
)
def test_an_invalid_file_is_refused_naming_the_entry_and_field(
    tmp_path: Path, entries: list[dict[str, Any]], message: str
) -> None:
    path = write(tmp_path, {"destinations": entries})
    with pytest.raises(DestinationsFileInvalid) as refused:
        file.load(path, environ={})
    assert message in str(refused.value)
    assert str(refused.value).startswith(f"DESTINATIONS_FILE {path}: ")
    # The secrets are never quoted back.
    assert SECRET not in str(refused.value) and "!!!" not in str(refused.value)


def test_a_missing_or_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DestinationsFileInvalid, match="cannot be read"):
        file.load(str(tmp_path / "nope.yaml"))
    (tmp_path / "bad.yaml").write_text("destinations: [\n")
    with pytest.raises(DestinationsFileInvalid, match="not valid YAML"):
        file.load(str(tmp_path / "bad.yaml"))


def test_an_invalid_file_stops_start_up(tmp_path: Path, database_url: str) -> None:
    path = write(tmp_path, {"destinations": [entry(url="not a url")]})
    app = create_app(make_settings(database_url, destinations_file=path))
    with pytest.raises(DestinationsFileInvalid, match=r"destinations\[0\] \(orders\): url"), TestClient(app):
        pass


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("payment.*", "payment.captured", True),
        ("payment.*", "refund.created", False),
        ("*", "", True),
        ("a.b", "axb", False),
        ("*.created", "refund.created", True),
        ("payment_[x]", "payment_[x]", True),
    ],
)
def test_event_type_wildcards(pattern: str, value: str, matches: bool) -> None:
    assert bool(file.wildcard(pattern).fullmatch(value)) is matches


def test_no_file_no_forwarding(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(api_tokens=[])
    assert client.get("/destinations").json() == []
    assert client.post("/destinations/orders/pause").json()["error"]["code"] == "destination_not_found"
