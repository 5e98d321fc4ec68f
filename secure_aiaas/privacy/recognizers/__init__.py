"""Custom Presidio recognizers, one per file."""

from __future__ import annotations

from secure_aiaas.privacy.recognizers.date_of_birth import DateOfBirthRecognizer
from secure_aiaas.privacy.recognizers.diacritic_name import DiacriticNameRecognizer
from secure_aiaas.privacy.recognizers.email_address import EmailAddressRecognizer
from secure_aiaas.privacy.recognizers.full_name_phrase import FullNamePhraseRecognizer
from secure_aiaas.privacy.recognizers.iban_code import IbanCodeRecognizer
from secure_aiaas.privacy.recognizers.location_context import LocationContextRecognizer
from secure_aiaas.privacy.recognizers.name_before_verb import NameBeforeVerbRecognizer
from secure_aiaas.privacy.recognizers.payment_card import PaymentCardRecognizer
from secure_aiaas.privacy.recognizers.person_context import PersonContextRecognizer
from secure_aiaas.privacy.recognizers.phone_number import PhoneNumberRecognizer
from secure_aiaas.privacy.recognizers.street_address import StreetAddressRecognizer

__all__ = [
    "DateOfBirthRecognizer",
    "DiacriticNameRecognizer",
    "EmailAddressRecognizer",
    "FullNamePhraseRecognizer",
    "IbanCodeRecognizer",
    "LocationContextRecognizer",
    "NameBeforeVerbRecognizer",
    "PaymentCardRecognizer",
    "PersonContextRecognizer",
    "PhoneNumberRecognizer",
    "StreetAddressRecognizer",
]
