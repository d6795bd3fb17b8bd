"""Standard Webhooks signing of what a destination is sent: the receiving service verifies it with any
Standard Webhooks library. Pure functions over bytes.

`webhook-id` is `{provider}:{event_id}` (printable ASCII; anything else percent-encoded), the same on
every attempt so the receiver can de-duplicate; `webhook-timestamp` is the attempt's time, so each
attempt's signature is fresh for the receiver's replay window.
"""

import base64
import hashlib
import hmac

from forwarding.messages import header_value


def webhook_id(provider: str, event_id: str) -> str:
    return header_value(f"{provider}:{event_id}")


def signature(key: bytes, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the decoded secret."""
    message = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def headers(key: bytes, *, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, msg_id=msg_id, timestamp=timestamp, body=body),
        "content-type": "application/json",
    }
