"""The prototype as it is usually first written, kept as a reference point for the table.

Its faults are the point, so they are deliberate: a blocking Session inside `async def` (every query
stalls the event loop), check-then-insert (two copies of one event can both pass the check), a commit
per request, and the engine's default pool. Do not copy from here.
"""

import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI, HTTPException, Request
from sqlalchemy import String, Text, create_engine, select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

SECRET = os.environ.get("RAZORPAY_WEBHOOK_SECRET", "bench_secret").encode()
# psycopg 3 is the installed driver; plain postgresql:// would ask SQLAlchemy for psycopg2.
URL = os.environ.get("DATABASE_URL", "sqlite:///./naive.db").replace(
    "postgresql://", "postgresql+psycopg://", 1
)

engine = create_engine(URL)


class Base(DeclarativeBase):
    pass


class NaiveEvent(Base):
    __tablename__ = "naive_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    event_type: Mapped[str] = mapped_column(String(255))
    payment_id: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    # With several workers, another one may create the table between the check and the CREATE.
    with suppress(OperationalError, ProgrammingError):
        Base.metadata.create_all(engine)
    yield
    engine.dispose()


app = FastAPI(lifespan=lifespan)


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
    session = Session(engine)
    try:
        found = session.scalars(select(NaiveEvent).where(NaiveEvent.event_id == payload["id"])).first()
        if found is not None:
            return {"status": "duplicate"}
        entity = payload.get("payload", {}).get("payment", {}).get("entity", {})
        session.add(
            NaiveEvent(
                event_id=payload["id"],
                event_type=payload["event"],
                payment_id=entity.get("id"),
                body=body.decode(),
            )
        )
        session.commit()
        return {"status": "stored"}
    finally:
        session.close()
