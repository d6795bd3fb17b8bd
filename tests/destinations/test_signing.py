"""Signing, checked by an independent implementation (the `standardwebhooks` package, as a receiving
service would use it), and the retry policy's arithmetic."""

import random
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import standardwebhooks.webhooks
from hypothesis import given
from hypothesis import strategies as st

from destinations import policy, signing
from destinations.file import Destination
from security import decode_standard_secret
from tests.destinations.conftest import SECRET


@given(
    body=st.dictionaries(st.text(max_size=10), st.text(max_size=40), max_size=4).map(orjson.dumps),
    event_id=st.text(min_size=1, max_size=40),
)
def test_every_signature_verifies_with_the_standardwebhooks_package(body: bytes, event_id: str) -> None:
    msg_id = signing.webhook_id("razorpay", event_id)
    now = int(datetime.now(UTC).timestamp())
    headers = signing.headers(decode_standard_secret(SECRET), msg_id=msg_id, timestamp=now, body=body)
    assert msg_id.isascii() and "\n" not in msg_id
    standardwebhooks.webhooks.Webhook(SECRET).verify(body, headers)


def test_a_signature_with_another_secret_or_body_does_not_verify() -> None:
    key = decode_standard_secret(SECRET)
    now = int(datetime.now(UTC).timestamp())
    headers = signing.headers(key, msg_id="razorpay:evt_1", timestamp=now, body=b'{"a":1}')
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.webhooks.Webhook(SECRET).verify(b'{"a":2}', headers)
    other = "whsec_" + "QUJD" * 8
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.webhooks.Webhook(other).verify(b'{"a":1}', headers)


def destination(**options: object) -> Destination:
    return Destination.model_validate(
        {"name": "orders", "url": "http://127.0.0.1:1/x", "secret": SECRET, **options}
    )


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    rng = random.Random(7)
    target = destination(backoff_base_seconds=1, backoff_max_seconds=30)
    for attempt, cap in [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (40, 30)]:
        waits = [policy.backoff_seconds(target, round_attempts=attempt, rng=rng) for _ in range(200)]
        assert min(waits) >= 0 and max(waits) <= cap
        assert max(waits) > cap / 2  # spread over the range, not pinned at its start


def test_retry_after_on_429_and_503_and_dead_when_the_policy_is_spent() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    target = destination(
        backoff_base_seconds=0.01, backoff_max_seconds=0.01, max_attempts=3, max_age_seconds=600
    )
    rng = random.Random(1)

    def after(
        status: int | None, header: str | None, attempts: int = 1, queued: datetime = now
    ) -> datetime | None:
        return policy.next_attempt(
            target,
            round_attempts=attempts,
            queued_at=queued,
            now=now,
            status_code=status,
            retry_after=header,
            rng=rng,
        )

    assert after(429, "30") == now + timedelta(seconds=30)
    assert after(503, "Thu, 03 Dec 2026 12:01:00 GMT") == now + timedelta(seconds=60)
    assert after(500, "30") is not None and after(500, "30") < now + timedelta(seconds=1)  # type: ignore[operator]
    assert after(429, "soon") < now + timedelta(seconds=1)  # type: ignore[operator]
    assert after(429, "99999") == now + timedelta(seconds=600)  # never past max_age
    assert after(500, None, attempts=3) is None
    assert after(500, None, queued=now - timedelta(seconds=600)) is None
    assert policy.retry_after_seconds("99999", now=now) == policy.RETRY_AFTER_CAP_SECONDS
