"""CREDIT_CARD: Luhn-valid card numbers of every current issuer range, grouped or not.

Presidio's regex predates Mastercard's 2-series (2221–2720), so those numbers pass through.
Here any 13–19 digits (spaces or dashes between groups) that start with a known issuer prefix
and pass the Luhn check count.
"""

from __future__ import annotations

import re

from presidio_analyzer import Pattern, PatternRecognizer

# Visa 4; Mastercard 51–55 and 2221–2720; Amex 34/37; Discover 6011/65/644–649; Diners 36/38/300–305;
# JCB 3528–3589 and the 15-digit 1800/2131; UnionPay 62; Maestro 50/56–58/6304/67.
_IIN = re.compile(
    r"^(?:4|5[1-5]|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720|3[47]|6011|65|64[4-9]|3[68]|30[0-5]|35"
    r"|62|5[06-8]|6304|67|1800|2131)"
)
PATTERNS = [Pattern("card number", r"\b\d(?:[ -]?\d){12,18}\b", 0.3)]


class PaymentCardRecognizer(PatternRecognizer):
    """Card numbers: issuer prefix + Luhn (score 0.9 when both hold, dropped otherwise)."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="CREDIT_CARD",
            patterns=PATTERNS,
            name="PaymentCardRecognizer",
            context=["card", "credit", "visa", "mastercard", "amex", "pan", "payment"],
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        """Valid when the digits have an issuer prefix and pass Luhn."""
        digits = re.sub(r"\D", "", pattern_text)
        if not 13 <= len(digits) <= 19 or not _IIN.match(digits):
            return False
        return luhn_ok(digits)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum over a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0
