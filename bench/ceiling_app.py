"""The ceiling: the least a receiver can do per delivery (read, verify, parse) with nothing stored.

Ours is judged against this, so it runs under the same uvicorn options and worker count.
"""

import hashlib
import hmac
import json
import os

from fastapi import FastAPI, HTTPException, Request

SECRET = os.environ.get("RAZORPAY_WEBHOOK_SECRET", "bench_secret").encode()

app = FastAPI()


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/webhooks/razorpay")
async def receive(request: Request) -> dict[str, str]:
    body = await request.body()
    expected = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("x-razorpay-signature", "")):
        raise HTTPException(status_code=401, detail="signature does not match")
    payload = json.loads(body)
    return {"status": "accepted", "event": str(payload.get("event"))}
