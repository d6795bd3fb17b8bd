"""Amounts in a currency's minor unit, converted exactly (never through float)."""

from decimal import Decimal, InvalidOperation

# ISO 4217 minor-unit exponents that are not 2. Everything else (USD, EUR, INR, ...) has 2.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}


def minor_unit_exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def decimal_to_minor(value: str, currency: str) -> int:
    """'10.99' USD -> 1099; '500' JPY -> 500; '1.234' KWD -> 1234. ValueError if not exact."""
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a decimal amount") from exc
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not a finite amount")
    minor = amount.scaleb(minor_unit_exponent(currency))
    if minor != minor.to_integral_value():
        raise ValueError(f"{value!r} has more decimals than {currency} allows")
    return int(minor)
