"""One POST to a destination: a 2xx within the timeout is success; any other status, a timeout, a
refused or reset connection, a TLS failure is a failed attempt, labelled with its error class.

Outbound safety: redirects are not followed (a 3xx is a failed attempt), the answer's body is read up
to the 1 KiB that is kept and no further, and it is asked for uncompressed so those bytes are what the
receiver wrote. Nothing here logs; the caller logs error classes, never secrets or payloads.
"""

import time
from dataclasses import dataclass
from typing import Final

import aiohttp

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


def client(destination: Destination) -> aiohttp.ClientSession:
    """One session per destination: its own connection pool, sized to its max_in_flight. Made on the
    running event loop (the dispatcher's)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=destination.max_in_flight),
        timeout=aiohttp.ClientTimeout(total=destination.timeout_seconds),
        trust_env=False,  # no proxy from the environment: the operator named the URL
        auto_decompress=False,
        headers={"user-agent": "payment-webhook-receiver", "accept-encoding": "identity"},
    )


async def send(
    http: aiohttp.ClientSession, destination: Destination, *, body: bytes, headers: dict[str, str]
) -> Result:
    started = time.perf_counter()
    status: int | None = None
    kept = b""
    retry_after: str | None = None
    error: str | None = None
    try:
        # The session's ClientTimeout (total: timeout_seconds) bounds the whole exchange, the body's
        # read included, and raises a TimeoutError.
        async with http.post(destination.url, data=body, headers=headers, allow_redirects=False) as response:
            status = response.status
            retry_after = response.headers.get("retry-after")
            while len(kept) < BODY_KEPT_BYTES:
                chunk = await response.content.read(BODY_KEPT_BYTES - len(kept))
                if not chunk:
                    break
                kept += chunk
            # Leaving the block with the rest unread closes the connection rather than reading on.
    except TimeoutError:
        error = "timeout"
    except (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError):
        error = "tls_error"
    except aiohttp.ClientConnectorError:
        error = "connect_error"
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError):
        error = "connection_reset"
    except (aiohttp.ClientError, OSError, ValueError):
        # Anything else the client raises (an answer it cannot parse, a URL it refuses) is a failed
        # attempt too: the event is retried, never lost.
        error = "http_error"
    latency_ms = (time.perf_counter() - started) * 1000
    delivered = error is None and status is not None and 200 <= status < 300
    if error is None and not delivered:
        error = "http_status"
    text = kept.decode("utf-8", "replace") if status is not None else None
    return Result(delivered, status, error, latency_ms, text, retry_after)
