"""One POST to a destination: a 2xx within the timeout is success; any other status, a timeout, a
refused or reset connection, a TLS failure is a failed attempt, labelled with its error class.

Outbound safety: redirects are not followed (a 3xx is a failed attempt), the answer's body is read up
to the 1 KiB that is kept and no further, and it is asked for uncompressed so those bytes are what the
receiver wrote. Nothing here logs; the caller logs error classes, never secrets or payloads.
"""

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import Final

import httpx

from destinations.file import Destination

BODY_KEPT_BYTES: Final = 1024


@dataclass(frozen=True, slots=True)
class Result:
    delivered: bool
    status_code: int | None
    error: str | None  # None, or: http_status, timeout, connect_error, connection_reset, tls_error, ...
    latency_ms: float
    body: str | None  # the first 1 KiB of the answer, as text
    retry_after: str | None


def client(destination: Destination) -> httpx.AsyncClient:
    """One client per destination: its own connection pool, sized to its max_in_flight."""
    limits = httpx.Limits(
        max_connections=destination.max_in_flight, max_keepalive_connections=destination.max_in_flight
    )
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(destination.timeout_seconds),
        limits=limits,
        trust_env=False,  # no proxy from the environment: the operator named the URL
        headers={"user-agent": "payment-webhook-receiver", "accept-encoding": "identity"},
    )


async def send(
    http: httpx.AsyncClient, destination: Destination, *, body: bytes, headers: dict[str, str]
) -> Result:
    started = time.perf_counter()
    status: int | None = None
    kept = bytearray()
    retry_after: str | None = None
    error: str | None = None
    try:
        # The whole exchange within the timeout (httpx's timeouts are per read, not per request).
        async with asyncio.timeout(destination.timeout_seconds):
            async with http.stream("POST", destination.url, content=body, headers=headers) as response:
                status = response.status_code
                retry_after = response.headers.get("retry-after")
                async for chunk in response.aiter_raw():
                    kept += chunk[: BODY_KEPT_BYTES - len(kept)]
                    if len(kept) >= BODY_KEPT_BYTES:
                        break
    except (TimeoutError, httpx.TimeoutException):
        error = "timeout"
    except httpx.ConnectError as exc:
        error = "tls_error" if _caused_by(exc, ssl.SSLError) else "connect_error"
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.CloseError):
        error = "connection_reset"
    except httpx.HTTPError:
        error = "http_error"
    latency_ms = (time.perf_counter() - started) * 1000
    delivered = error is None and status is not None and 200 <= status < 300
    if error is None and not delivered:
        error = "http_status"
    text = kept.decode("utf-8", "replace") if status is not None else None
    return Result(delivered, status, error, latency_ms, text, retry_after)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
