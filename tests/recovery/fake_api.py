"""A local HTTP server that answers as the providers' APIs document: Stripe's list objects and error
bodies, Razorpay's collections, PayPal's OAuth2 token and HATEOAS links, Paystack's status/meta
envelope. It records every request (path, query, headers) so tests can assert on what a provider sees,
and can be told to answer the next requests to a path with a fault (429, 500, 401)."""

import base64
import contextlib
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

STRIPE_KEY = "sk_test_51RecoveryFakeKey"
RAZORPAY_KEY = ("rzp_test_recovery", "recovery_key_secret")
PAYPAL_CLIENT = ("AYpaypalRecoveryClient", "EPpaypalRecoverySecret")
PAYSTACK_KEY = "sk_test_conformance_paystack_secret"

STRIPE_BAD_KEY = {
    "error": {
        "message": "Invalid API Key provided: sk_test_****_bad",
        "type": "invalid_request_error",
    }
}
STRIPE_RATE_LIMITED = {
    "error": {
        "message": "Too many requests hit the API too quickly. We recommend an exponential backoff of your "
        "requests.",
        "type": "invalid_request_error",
        "code": "rate_limit",
    }
}
STRIPE_SERVER_ERROR = {"error": {"message": "An unknown error occurred", "type": "api_error"}}
RAZORPAY_BAD_KEY = {
    "error": {
        "code": "BAD_REQUEST_ERROR",
        "description": "The api key provided is invalid",
        "source": "NA",
        "step": "NA",
        "reason": "NA",
        "metadata": {},
    }
}
RAZORPAY_NO_SUCH_ID = {
    "error": {
        "code": "BAD_REQUEST_ERROR",
        "description": "The id provided does not exist",
        "source": "business",
        "step": "payment_initiation",
        "reason": "input_validation_failed",
        "metadata": {},
    }
}
PAYPAL_AUTH_FAILURE = {
    "name": "AUTHENTICATION_FAILURE",
    "message": "Authentication failed due to invalid authentication credentials or a missing Authorization "
    "header.",
    "links": [
        {
            "href": "https://developer.paypal.com/docs/api/overview/#error",
            "rel": "information_link",
        }
    ],
}
PAYPAL_INVALID_CLIENT = {"error": "invalid_client", "error_description": "Client Authentication failed"}
PAYSTACK_BAD_KEY = {"status": False, "message": "Invalid key"}


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: str


@dataclass
class Fault:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class FakeProviders:
    def __init__(self) -> None:
        self.stripe_events: list[dict[str, Any]] = []
        self.razorpay_payments: dict[str, dict[str, Any]] = {}
        self.paypal_events: list[dict[str, Any]] = []
        self.stripe_intents: dict[str, dict[str, Any]] = {}
        self.paypal_captures: dict[str, dict[str, Any]] = {}
        self.paystack_transactions: list[dict[str, Any]] = []
        self.seen: list[Seen] = []
        self.faults: dict[str, deque[Fault]] = {}
        self.down_from: dict[str, tuple[int, Fault]] = {}
        self.paypal_tokens: set[str] = set()
        self.paypal_token_lifetime = 32400
        self.latency = 0.0  # seconds added to every answer: a provider across a network
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeProviders":
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, path: str, *faults: Fault) -> None:
        self.faults.setdefault(path, deque()).extend(faults)

    def go_down(self, path: str, *, from_call: int, fault: Fault) -> None:
        """From its `from_call`-th request on (counting from 1), `path` answers `fault`, until `go_up`."""
        self.down_from[path] = (from_call, fault)

    def go_up(self, path: str) -> None:
        self.down_from.pop(path, None)

    def requests_to(self, path: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path == path]

    # --- the routes ---------------------------------------------------------------------------------

    def answer(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.seen.append(seen)
            if seen.path in self.down_from:
                from_call, down = self.down_from[seen.path]
                if len(self.requests_to(seen.path)) >= from_call:
                    return down.status, down.body, down.headers
            queue = self.faults.get(seen.path)
            if queue:
                fault = queue.popleft()
                return fault.status, fault.body, fault.headers
        if seen.path == "/v1/events":
            return self.stripe_list(seen)
        if seen.path.startswith("/v1/payment_intents/"):
            return self.stripe_intent(seen)
        if seen.path.startswith("/v2/payments/captures/"):
            return self.paypal_capture(seen)
        if seen.path == "/v1/payments":
            return self.razorpay_list(seen)
        if seen.path.startswith("/v1/payments/"):
            return self.razorpay_fetch(seen)
        if seen.path == "/v1/oauth2/token":
            return self.paypal_token(seen)
        if seen.path == "/v1/notifications/webhooks-events":
            return self.paypal_list(seen)
        if seen.path == "/transaction":
            return self.paystack_list(seen)
        if seen.path.startswith("/transaction/verify/"):
            return self.paystack_verify(seen)
        return 404, {"error": {"message": f"Unrecognized request URL (GET: {seen.path})"}}, {}

    def stripe_list(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        if seen.headers.get("authorization") != f"Bearer {STRIPE_KEY}":
            return 401, STRIPE_BAD_KEY, {}
        query = seen.query
        events = self.stripe_matching(
            frozenset(query.get("types[]", [])),
            int(query["created[gte]"][0]) if "created[gte]" in query else None,
            int(query["created[lt]"][0]) if "created[lt]" in query else None,
            "delivery_success" in query,
        )
        if "starting_after" in query:
            ids = [e["id"] for e in events]
            events = events[ids.index(query["starting_after"][0]) + 1 :]
        limit = int(query.get("limit", ["10"])[0])
        return (
            200,
            {"object": "list", "data": events[:limit], "has_more": len(events) > limit, "url": "/v1/events"},
            {},
        )

    def stripe_matching(
        self, types: frozenset[str], gte: int | None, lt: int | None, undelivered: bool
    ) -> list[dict[str, Any]]:
        """The events a list request's filters select, newest first, as Stripe lists them."""
        return [
            e
            for e in sorted(self.stripe_events, key=lambda e: (e["created"], e["id"]), reverse=True)
            if (not types or e["type"] in types)
            and (gte is None or e["created"] >= gte)
            and (lt is None or e["created"] < lt)
            and (not undelivered or e["pending_webhooks"] > 0)
        ]

    def stripe_intent(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        if seen.headers.get("authorization") != f"Bearer {STRIPE_KEY}":
            return 401, STRIPE_BAD_KEY, {}
        intent_id = seen.path.rsplit("/", 1)[-1]
        if intent_id not in self.stripe_intents:
            error = {
                "code": "resource_missing",
                "message": f"No such payment_intent: '{intent_id}'",
                "param": "intent",
                "type": "invalid_request_error",
            }
            return 404, {"error": error}, {}
        return 200, self.stripe_intents[intent_id], {}

    def paypal_capture(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        if seen.headers.get("authorization", "").removeprefix("Bearer ") not in self.paypal_tokens:
            return 401, PAYPAL_AUTH_FAILURE, {}
        capture_id = seen.path.rsplit("/", 1)[-1]
        if capture_id not in self.paypal_captures:
            return (
                404,
                {"name": "RESOURCE_NOT_FOUND", "message": "The specified resource does not exist."},
                {},
            )
        return 200, self.paypal_captures[capture_id], {}

    def _razorpay_authorised(self, seen: Seen) -> bool:
        expected = base64.b64encode(":".join(RAZORPAY_KEY).encode()).decode()
        return seen.headers.get("authorization") == f"Basic {expected}"

    def razorpay_list(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        if not self._razorpay_authorised(seen):
            return 401, RAZORPAY_BAD_KEY, {}
        start, end = int(seen.query["from"][0]), int(seen.query["to"][0])
        count, skip = int(seen.query.get("count", ["10"])[0]), int(seen.query.get("skip", ["0"])[0])
        payments = [
            p
            for p in sorted(
                self.razorpay_payments.values(), key=lambda p: (p["created_at"], p["id"]), reverse=True
            )
            if start <= p["created_at"] <= end
        ][skip : skip + count]
        return 200, {"entity": "collection", "count": len(payments), "items": payments}, {}

    def razorpay_fetch(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        if not self._razorpay_authorised(seen):
            return 401, RAZORPAY_BAD_KEY, {}
        payment = self.razorpay_payments.get(seen.path.rsplit("/", 1)[-1])
        return (200, payment, {}) if payment else (400, RAZORPAY_NO_SUCH_ID, {})

    def paypal_token(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        expected = base64.b64encode(":".join(PAYPAL_CLIENT).encode()).decode()
        if (
            seen.headers.get("authorization") != f"Basic {expected}"
            or seen.body != "grant_type=client_credentials"
        ):
            return 401, PAYPAL_INVALID_CLIENT, {}
        token = "A21AA" + secrets.token_urlsafe(24)
        self.paypal_tokens.add(token)
        return (
            200,
            {
                "scope": "https://uri.paypal.com/services/webhooks",
                "access_token": token,
                "token_type": "Bearer",
                "app_id": "APP-80W284485P519543T",
                "expires_in": self.paypal_token_lifetime,
                "nonce": "2026-12-03T10:00:00ZnonceFake",
            },
            {},
        )

    def paypal_list(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        token = seen.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.paypal_tokens:
            return 401, PAYPAL_AUTH_FAILURE, {}
        start = _iso(seen.query["start_time"][0])
        end = _iso(seen.query["end_time"][0])
        size = int(seen.query.get("page_size", ["10"])[0])
        events = [
            e
            for e in sorted(self.paypal_events, key=lambda e: (e["create_time"], e["id"]), reverse=True)
            if start <= _iso(e["create_time"]) <= end
        ]
        offset = int(seen.query.get("next_page_token", ["0"])[0])
        page = events[offset : offset + size]
        links = [{"href": f"{self.url}/v1/notifications/webhooks-events", "rel": "self", "method": "GET"}]
        if offset + size < len(events):
            query = (
                "&".join(f"{k}={v[0]}" for k, v in seen.query.items() if k != "next_page_token")
                + f"&next_page_token={offset + size}"
            )
            links.append(
                {
                    "href": f"{self.url}/v1/notifications/webhooks-events?{query}",
                    "rel": "next",
                    "method": "GET",
                }
            )
        return 200, {"events": page, "count": len(page), "links": links}, {}

    def _paystack_authorised(self, seen: Seen) -> bool:
        return seen.headers.get("authorization") == f"Bearer {PAYSTACK_KEY}"

    def paystack_list(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        if not self._paystack_authorised(seen):
            return 401, PAYSTACK_BAD_KEY, {}
        start, end = _iso(seen.query["from"][0]), _iso(seen.query["to"][0])
        per_page, page = int(seen.query.get("perPage", ["50"])[0]), int(seen.query.get("page", ["1"])[0])
        matching = [
            t
            for t in sorted(self.paystack_transactions, key=lambda t: t["id"], reverse=True)
            if start <= _iso(t["createdAt"]) <= end
        ]
        data = matching[(page - 1) * per_page : page * per_page]
        page_count = max(1, -(-len(matching) // per_page))
        meta = {
            "total": len(matching),
            "skipped": (page - 1) * per_page,
            "perPage": per_page,
            "page": page,
            "pageCount": page_count,
        }
        return 200, {"status": True, "message": "Transactions retrieved", "data": data, "meta": meta}, {}

    def paystack_verify(self, seen: Seen) -> tuple[int, Any, dict[str, str]]:
        if not self._paystack_authorised(seen):
            return 401, PAYSTACK_BAD_KEY, {}
        reference = seen.path.rsplit("/", 1)[-1]
        for transaction in self.paystack_transactions:
            if transaction["reference"] == reference:
                return 200, {"status": True, "message": "Verification successful", "data": transaction}, {}
        return 400, {"status": False, "message": "Transaction reference not found"}, {}


def _iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _handler(api: FakeProviders) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall between

        def log_message(self, *_: Any) -> None:
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            seen = Seen(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=self.rfile.read(length).decode() if length else "",
            )
            status, body, headers = api.answer(seen)
            if api.latency:
                time.sleep(api.latency)
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            # A client that timed out has gone: its answer has nowhere to go.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

        do_GET = _serve
        do_POST = _serve

    return Handler


# --- the providers' objects, as their API references show them ------------------------------------------


def stripe_event(
    index: int, *, event_type: str = "payment_intent.succeeded", payment_id: str | None = None, created: int
) -> dict[str, Any]:
    intent = payment_id or f"pi_3Rec{index:08d}"
    status = {
        "payment_intent.succeeded": "succeeded",
        "payment_intent.amount_capturable_updated": "requires_capture",
        "payment_intent.payment_failed": "requires_payment_method",
        "payment_intent.created": "requires_payment_method",
    }.get(event_type, "succeeded")
    return {
        "id": f"evt_3Rec{index:08d}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {
            "object": {
                "id": intent,
                "object": "payment_intent",
                "amount": 2000,
                "amount_received": 2000 if status == "succeeded" else 0,
                "capture_method": "automatic",
                "currency": "usd",
                "livemode": False,
                "status": status,
            }
        },
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": f"req_{index:08d}", "idempotency_key": None},
        "type": event_type,
    }


def razorpay_payment(payment_id: str, *, status: str, created_at: int, amount: int = 50000) -> dict[str, Any]:
    return {
        "id": payment_id,
        "entity": "payment",
        "amount": amount,
        "currency": "INR",
        "status": status,
        "order_id": None,
        "invoice_id": None,
        "international": False,
        "method": "upi",
        "amount_refunded": 0,
        "refund_status": None,
        "captured": status in ("captured", "refunded"),
        "description": None,
        "card_id": None,
        "bank": None,
        "wallet": None,
        "vpa": "gaurav.kumar@exampleupi",
        "email": "gaurav.kumar@example.com",
        "contact": "+919000090000",
        "notes": [],
        "fee": 1180 if status == "captured" else None,
        "tax": 180 if status == "captured" else None,
        "error_code": None,
        "error_description": None,
        "created_at": created_at,
    }


def paypal_event(
    index: int, *, event_type: str = "PAYMENT.CAPTURE.COMPLETED", create_time: str
) -> dict[str, Any]:
    return {
        "id": f"WH-{index:04d}-RECOVERY-5KH13541YK893784T",
        "create_time": create_time,
        "resource_type": "capture",
        "event_type": event_type,
        "summary": "Payment completed for $ 10.99 USD",
        "resource": {
            "id": f"42311647XV0{index:05d}",
            "status": "COMPLETED" if event_type.endswith("COMPLETED") else "PENDING",
            "amount": {"currency_code": "USD", "value": "10.99"},
            "final_capture": True,
            "create_time": create_time,
            "update_time": create_time,
        },
        "links": [
            {
                "href": f"https://api-m.paypal.com/v1/notifications/webhooks-events/WH-{index:04d}",
                "rel": "self",
                "method": "GET",
            }
        ],
        "event_version": "1.0",
        "resource_version": "2.0",
    }


def paystack_transaction(index: int, *, status: str, created_at: str) -> dict[str, Any]:
    return {
        "id": 4099260000 + index,
        "domain": "test",
        "status": status,
        "reference": f"re4lyvq3s3{index:04d}",
        "amount": 40333,
        "message": None,
        "gateway_response": "Successful" if status == "success" else "Declined",
        "paid_at": created_at if status == "success" else None,
        "created_at": created_at,
        "channel": "card",
        "currency": "NGN",
        "ip_address": "197.210.54.33",
        "metadata": None,
        "fees": 10283,
        "customer": {"id": 181873746, "email": "demo@test.com", "customer_code": "CUS_1rkzaqsv4rrhqo6"},
        "createdAt": created_at,
        "paidAt": created_at if status == "success" else None,
    }
