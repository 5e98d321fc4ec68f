"""DATE_OF_BIRTH: a date next to "DOB", "born", "date of birth".

Presidio's DATE_TIME flags every date and duration ("two years"), which changes most texts
that hold no personal data. A birth date is what identifies a person, so we look for dates
only where the context says birth; the JSON path passes the field name as that context.
"""

from __future__ import annotations

from presidio_analyzer import Pattern, PatternRecognizer

_MONTHS = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
PATTERNS = [
    Pattern("iso date", r"\b(?:19|20)\d{2}-[01]\d-[0-3]\d\b", 0.1),
    Pattern("numeric date", r"\b[0-3]?\d[/.][0-3]?\d[/.](?:19|20)?\d{2}\b", 0.1),
    Pattern("day month year", rf"\b[0-3]?\d\s{{1,8}}{_MONTHS}\s{{1,8}}(?:19|20)\d{{2}}\b", 0.1),
    Pattern("month day year", rf"\b{_MONTHS}\s{{1,8}}[0-3]?\d,?\s{{1,8}}(?:19|20)\d{{2}}\b", 0.1),
]
CONTEXT = ["dob", "d.o.b", "birth", "born", "birthday", "birthdate", "date_of_birth"]


class DateOfBirthRecognizer(PatternRecognizer):
    """Dates that the context marks as a birth date (low score alone, boosted by context)."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="DATE_OF_BIRTH",
            patterns=PATTERNS,
            context=CONTEXT,
            name="DateOfBirthRecognizer",
        )
