"""The new verifiers over any header text: a `SignatureError` or a pass, never another exception."""

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import security
from errors import SignatureError

BODY = b'{"id": "evt_1", "data": {"id": "123"}}'
NOW = 1_751_889_985.0
# Header values as a server decodes them (latin-1), including separators the parsers split on.
HEADER = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=200) | st.sampled_from(
    [
        "ts=;h1=",
        "ts=1;h1=",
        "ts=99999999999999999999;h1=ab",
        "t=1,v1=",
        "ts=1,v1=zz",
        ",,,",
        ";;;",
        "=",
        "ts=-1,v1=a",
    ]
)

VERIFIERS: dict[str, Callable[[str], object]] = {
    "gocardless": lambda header: security.verify_gocardless(BODY, header, ["secret"]),
    "checkout": lambda header: security.verify_checkout(BODY, header, ["secret"]),
    "paddle": lambda header: security.verify_paddle(BODY, header, ["secret"], now=NOW, tolerance=300),
    "square": lambda header: security.verify_square(
        BODY, header, ["key"], notification_url="https://x.example/h"
    ),
    "mercadopago": lambda header: security.verify_mercadopago(
        header, data_id="123", request_id=header, secrets=["secret"], now=NOW, tolerance=300
    ),
    "cashfree signature": lambda header: security.verify_cashfree(
        BODY, signature=header, timestamp="1751889985000", secrets=["secret"], now=NOW, tolerance=300
    ),
    "cashfree timestamp": lambda header: security.verify_cashfree(
        BODY, signature="abc", timestamp=header, secrets=["secret"], now=NOW, tolerance=300
    ),
    "basic auth": lambda header: security.verify_basic_auth(header, ["user:password"]),
    "static key": lambda header: security.verify_static_key(header, ["key"], header="Authorization"),
    "adyen item": lambda header: security.verify_adyen_item(
        {"pspReference": header, "success": header, "additionalData": {"hmacSignature": header}}, [b"k"]
    ),
}


@pytest.mark.parametrize("name", sorted(VERIFIERS))
@settings(max_examples=200, deadline=None)
@given(header=HEADER)
def test_any_header_is_refused_with_a_signature_error_or_passes(name: str, header: str) -> None:
    with contextlib.suppress(SignatureError):
        VERIFIERS[name](header)


def test_adyen_refuses_a_field_of_another_type() -> None:
    item = {"pspReference": ["not", "text"], "additionalData": {"hmacSignature": "x"}}
    with pytest.raises(SignatureError):
        security.verify_adyen_item(item, [b"k"])


@pytest.mark.parametrize(("value", "seconds"), [("1751889985", 1751889985), ("1751889985123", 1751889985)])
def test_timestamps_in_seconds_or_milliseconds(value: str, seconds: int) -> None:
    assert security.unix_seconds_or_millis(value) == seconds


@pytest.mark.parametrize("value", ["", "-1", "1e9", "\uff11\uff12\uff13", "9" * 14, " 1"])
def test_timestamps_that_are_not_plain_digits(value: str) -> None:
    assert security.unix_seconds_or_millis(value) is None


def test_a_key_that_is_not_hex_stops_start_up() -> None:
    with pytest.raises(ValueError, match="ADYEN_HMAC_KEY"):
        security.decode_hex_key("not hex", setting="ADYEN_HMAC_KEY")
