"""Templates of the second round's DEV split (``mixed-dev``): tuned on.

Separate from ``templates_final.py`` (frozen). Same formats, own wording.
"""

from __future__ import annotations

PII: dict[str, list[str]] = {
    "letter": [
        "Dear Ms {PERSON:last},\nyour subscription ends on {DATE:long}. Renew online or call {PHONE}.\nSincerely,\n{PERSON2}",
        "Hello {PERSON:first},\nwelcome to the {CITY} branch! Your mentor will be {PERSON2}.",
        "Dear {PERSON},\nwe have received your change of address to {STREET:secondary}, {POSTCODE} {CITY}.",
        "To {PERSON:initial}, {STREET}, {CITY}\nNotice of a parcel awaiting collection.",
        "Dear {PERSON:first} and {PERSON2:first},\ncongratulations on the new house in {CITY}!",
    ],
    "chat": [
        "omw, tell {PERSON:lowerfirst} to wait for me",
        "did {PERSON:lowerfirst} ever pay u back",
        "we drove through {CITY:lower} on the way, so pretty",
        "{PERSON:lowerfirst} and {PERSON2:lowerfirst} are late again smh",
        "heard from {PERSON:lowerlast}? he hasnt replied in days",
        "i live at {STREET:lower} now, come over sometime",
        "this is {PERSON:lower}, my number changed to {PHONE}",
        "anyone know if {PERSON:lowerfirst} is back from {CITY:lower} yet",
        "ask {PERSON:lowerfirst} lol she knows everything",
    ],
    "log": [
        "{DATE:iso} {TIME} INFO GET /newsletter/confirm?email={EMAIL}&t={HEX} 302",
        "{DATE:iso} WARN rate limit for user={PERSON:first} from {IP}",
        "PUT /v1/contacts/{NUM}?name={PERSON:first}+{PERSON:last} 200",
        "{TIME} INFO shipment {ORDER} to {CITY} dispatched",
        "{DATE:iso} ERROR sms gateway: {PHONE} unreachable",
        "callback ?redirect=https%3A%2F%2Fshop.example%2F&mail={EMAIL:urlenc} 200",
    ],
    "json": [
        '{"contact": {"givenName": "{PERSON:first}", "familyName": "{PERSON:last}"}, "tel": "{PHONE}"}',
        '{"to": "{PERSON}", "address": "{STREET}, {CITY}"}',
        '{"text": "meet {PERSON:first} at the {CITY} station", "ts": {NUM}}',
        '{"payee": "{PERSON:lower}", "iban": "{IBAN}"}',
        '{"login": {"email": "{EMAIL}", "ip": "{IP}"}}',
    ],
    "form": [
        "Surname: {PERSON:upperlast}\nForename: {PERSON:first}\nDOB: {DOB:dmy}",
        "Name (as on passport): {PERSON:upper}\nCity of birth: {CITY}",
        "Contact person: {PERSON}, phone {PHONE}, e-mail {EMAIL}",
        "Residential address: {STREET}, {POSTCODE} {CITY}",
        "Card holder: {PERSON} Card: {CARD} SSN: {SSN}",
    ],
    "medical": [
        "{PERSON} (born {DOB:us}) seen in clinic for knee pain; X-ray booked.",
        "Next of kin: {PERSON2}, lives at {STREET}, {CITY}.",
        "pt {PERSON:lowerfirst} {PERSON:lowerlast}, 71, fall at home, no head injury.",
        "Dr {PERSON2:last} reviewed {PERSON:first} on the ward this morning.",
        "Results discussed with {PERSON:upper}; follow-up in {CITY}.",
    ],
    "bank": [
        "paid {PERSON:lowerfirst} back for the taxi",
        "Transfer to {PERSON:lower}, iban {IBAN:lowerspaced}, amount {AMOUNT}",
        "Salary from {COMPANY} credited; sender address {STREET}, {CITY}.",
        "Payment to {PERSON:initial} of {AMOUNT} EUR failed: insufficient funds.",
        "owe {PERSON:lowerfirst} {AMOUNT} for the hotel in {CITY:lower}",
        "Card {CARD:dashed} used in {CITY} at {TIME}.",
    ],
    "address": [
        "{PERSON}, {STREET:secondary}, {POSTCODE} {CITY}",
        "Office: {STREET}\n{CITY:upper}",
        "Send the samples to {STREET}, {CITY}, attn. {PERSON:first}",
        "{STREET:upper}, {POSTCODE} {CITY:upper}",
        "Meeting point: {STREET} in {CITY}",
    ],
}

PII_FREE: dict[str, list[str]] = {
    "product": [
        "Model {PRODUCT} has {NUM} GB of storage.",
        "Pre-order the {PRODUCT} today and save {NUM}%.",
        "{PRODUCT} reviews: solid build, average battery.",
    ],
    "software": [
        "Porting the service from {LANG} to {LANG} took {NUM} weeks.",
        "{LANG} {NUM}.{NUM} adds pattern matching.",
        "Which {LANG} web framework do you recommend?",
        "The {LANG} SDK is now stable.",
    ],
    "clinical": [
        "Afebrile overnight; continue IV fluids for {NUM} hours.",
        "ECG showed sinus rhythm; troponin negative.",
        "Advised rest, ice and ibuprofen for {NUM} days.",
    ],
    "ops": [
        "{DATE:iso} {TIME} INFO POST /api/v1/jobs 201 {NUM}ms",
        "Certificate rotation {ORDER} completed on {NUM} hosts.",
    ],
    "prose": [
        "The library is closed for renovation until autumn.",
        "Bring your own cup to the workshop.",
        "The hills were covered in snow by morning.",
    ],
    "json": [
        '{"product": "{PRODUCT}", "qty": {NUM}}',
        '{"runtime": "{LANG}", "version": "{NUM}.{NUM}"}',
    ],
    "finance": [
        "Revenue for the year rose {NUM} percent.",
        "Reminder: invoice {ORDER} of {AMOUNT} EUR is overdue.",
    ],
}
