"""How the console writes values: amounts in the currency's major unit, UTC times, lags, headers."""

import base64
import json
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from providers.money import minor_unit_exponent

# Headers that carry a signature: shown as redacted, never in full (a valid one could be replayed).
SIGNATURE_HEADER_WORDS = ("signature", "transmission-sig")


@lru_cache(maxsize=4096)  # a timeline repeats the same few amounts
def major_amount(amount: int, currency: str | None) -> str:
    """5000 INR -> '50.00'; 500 JPY -> '500'; 1234 KWD -> '1.234'. Exact: Decimal, never float."""
    exponent = minor_unit_exponent(currency or "")
    return f"{Decimal(amount).scaleb(-exponent):,.{exponent}f}"


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def lag(value: timedelta) -> str:
    """A short human duration: '350 ms', '4.2 s', '3 min 5 s', '2 h 10 min', '3 d 4 h'; negative when
    the provider's clock is ahead of ours."""
    sign, seconds = ("-", -value.total_seconds()) if value < timedelta(0) else ("", value.total_seconds())
    if seconds < 1:
        text = f"{seconds * 1000:.0f} ms"
    elif seconds < 60:
        text = f"{seconds:.1f} s"
    elif seconds < 3600:
        text = f"{int(seconds // 60)} min {int(seconds % 60)} s"
    elif seconds < 86400:
        text = f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    else:
        text = f"{int(seconds // 86400)} d {int(seconds % 86400 // 3600)} h"
    return sign + text


def is_signature_header(name: str) -> bool:
    return any(word in name.lower() for word in SIGNATURE_HEADER_WORDS)


def shown_headers(headers: dict[str, str]) -> list[tuple[str, str, bool]]:
    """(name, value, redacted) in name order, signature values replaced."""
    return [
        (name, f"redacted ({len(value)} characters)", True)
        if is_signature_header(name)
        else (name, value, False)
        for name, value in sorted(headers.items())
    ]


def pretty_body(raw: bytes) -> str | None:
    """The body as indented JSON, or None when it is not UTF-8 JSON."""
    try:
        return json.dumps(json.loads(raw.decode("utf-8")), indent=2, ensure_ascii=False)
    except (UnicodeDecodeError, ValueError):
        return None


def exact_body(raw: bytes) -> tuple[str, str]:
    """(text, encoding): the bytes as received, as text when UTF-8, else base64."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"
