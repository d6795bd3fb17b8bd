"""A timeline row's HTML, written in Python: a timeline has up to 5,000 rows, and Jinja2's per-value
escaping (a Markup object per value) was most of a 1,000-event page's time. Every value from a payload
goes through `html.escape` (quotes included), which makes it safe in text and in attributes alike."""

from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from markupsafe import Markup

from console.format import lag, major_amount
from console.timeline import TimelineRow

NONE = '<span class="none">—</span>'


def _time(value: datetime) -> str:
    iso = value.isoformat()  # ours, not a payload's: digits and separators only
    return f'<time datetime="{iso}"><span>{iso[:10]}</span> <span>{iso[11:19]} UTC</span></time>'


def _status(value: str | None) -> str:
    if not value:
        return '<span class="none">no status</span>'
    status = escape(value)
    return f'<span class="status s-{status}">{status}</span>'


def _money(amount: int | None, currency: str | None) -> str:
    if amount is None:
        return NONE
    code = escape(currency or "")
    shown = major_amount(amount, currency)
    return f'<data value="{amount}" title="{amount} in minor units">{shown} {code}</data>'


def _notes(row: TimelineRow) -> str:
    notes = []
    if (late := row.arrived_after) is not None:
        name = escape(late.event_type or late.event_id)
        notes.append(
            f'<span class="marker late">Out of order: arrived after {name}, which happened later</span>'
        )
    if row.already_further:
        state = escape(row.state_status or "further along")
        notes.append(f'<span class="marker unchanged">No change: already {state}</span>')
    if not row.event.status:
        notes.append('<span class="marker info">Says nothing about the state</span>')
    return "".join(notes)


def deliveries(event: Any) -> str:
    """How many times the event was delivered over HTTP, duplicates collapsed into the count, with the
    first and last delivery times. A delivered event's first delivery is when it was stored; a recovered
    one was stored before any delivery, and its first delivery time is not kept."""
    count, last = event.delivery_count, event.last_delivered_at or event.received_at
    if count == 0:
        return '<span class="none">none (recovered)</span>'
    if event.origin != "webhook":
        return (
            f'<span class="count">{count}</span><span class="sub">after recovery, last {_time(last)}</span>'
        )
    if count == 1:
        return f'<span class="count">1</span><span class="sub">{_time(event.received_at)}</span>'
    return (
        f'<span class="count">{count}</span><span class="sub">first {_time(event.received_at)}</span>'
        f'<span class="sub">last {_time(last)}</span>'
    )


def delivery_cell(event: Any) -> Markup:
    """`deliveries` for a template (the event page)."""
    return Markup(deliveries(event))  # noqa: S704 (no payload value: numbers and our own times)


def timeline_row(row: TimelineRow) -> Markup:
    e = row.event
    flagged = ' class="flagged"' if row.arrived_after is not None or row.already_further else ""
    link = f"/console/events/{quote(e.provider, safe='')}/{quote(e.event_id, safe='')}"
    cells = (
        f'<td class="num">{row.arrival}</td>',
        f'<td class="type">{escape(e.event_type or "—")}</td>',
        f'<td>{_status(e.status)}<span class="sub">{escape(e.provider_status or "—")}</span></td>',
        f'<td class="num">{_money(e.amount, e.currency)}</td>',
        f"<td>{_time(e.occurred_at)}</td>",
        f"<td>{_time(e.received_at)}</td>",
        f'<td class="num">{lag(row.lag)}</td>',
        f'<td class="state">{_status(row.state_status)} '
        f"{'' if row.state_amount is None else _money(row.state_amount, row.state_currency)}</td>",
        f'<td class="notes">{_notes(row)}</td>',
        f'<td class="deliveries">{deliveries(e)}</td>',
        f'<td class="id"><a href="{escape(link)}">{escape(e.event_id)}</a></td>',
    )
    return Markup(f"<tr{flagged}>{''.join(cells)}</tr>\n")  # noqa: S704 (every payload value escaped above)
