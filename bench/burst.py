"""One burst of traffic against a running server: build the requests, replay them, account for them."""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import payloads, wrk

MIN_REQUESTS = 2_000
MAX_REQUESTS = 600_000  # about 200 MB of requests; far beyond what one budget needs on two cores


@dataclass(slots=True)
class IngestLoad:
    result: wrk.WrkResult
    unique_sent: int  # distinct events among the requests written: the rows a receiver should add
    duplicates_sent: int


def request_count(*, expected_rps: float, budget_s: float) -> int:
    """Enough requests to last the budget at 1.5x the expected rate; the run ends early if they run out."""
    return max(MIN_REQUESTS, min(MAX_REQUESTS, int(expected_rps * 1.5 * budget_s)))


def ingest(
    *,
    url: str,
    tag: str,
    count: int,
    connections: int,
    budget_s: float,
    workdir: Path,
    duplicate_ratio: float = payloads.DUPLICATE_RATIO,
) -> IngestLoad:
    deliveries = payloads.deliveries(count=count, tag=tag, duplicate_ratio=duplicate_ratio)
    requests = [payloads.webhook_request(delivery) for delivery in deliveries]
    result = wrk.run(url=url, requests=requests, connections=connections, budget_s=budget_s, workdir=workdir)
    sent = [deliveries[index] for index in result.sent_indices]
    unique = len({delivery.event_id for delivery in sent})
    return IngestLoad(result, unique, len(sent) - unique)


def history(
    *,
    url: str,
    payment_ids: Sequence[str],
    count: int,
    connections: int,
    budget_s: float,
    workdir: Path,
    headers: dict[str, str] | None = None,
) -> wrk.WrkResult:
    """GET /payments/{id}/events for payments picked at random (seeded) from those stored."""
    rng = random.Random(2)
    requests = [
        payloads.get_request(f"/payments/{rng.choice(payment_ids)}/events", headers or {})
        for _ in range(count)
    ]
    return wrk.run(url=url, requests=requests, connections=connections, budget_s=budget_s, workdir=workdir)
