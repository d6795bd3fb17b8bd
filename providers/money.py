"""Amounts in a currency's minor unit, converted exactly (never through float)."""

import re
from decimal import Decimal

# ISO 4217 minor-unit exponents that are not 2. Everything else (USD, EUR, INR, ...) has 2.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV"], 0
    ),
    **dict.fromkeys(["XAF", "XOF", "XPF"], 0),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}

# A plain decimal as PayPal writes it ("10.99", "500", "-1.5"). Decimal() alone would also take
# "1e3", "NaN", "1_000", " 7 " and non-ASCII digits; none of them is an amount a provider sends.
_PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,19}(?:\.[0-9]{1,18})?")


def minor_unit_exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def decimal_to_minor(value: str, currency: str) -> int:
    """'10.99' USD -> 1099; '500' JPY -> 500; '1.234' KWD -> 1234. ValueError if not exact."""
    if not _PLAIN_DECIMAL.fullmatch(value):
        raise ValueError(f"{value!r} is not a plain decimal amount")
    minor = Decimal(value).scaleb(minor_unit_exponent(currency))
    if minor != minor.to_integral_value():
        raise ValueError(f"{value!r} has more decimals than {currency} allows")
    return int(minor)
