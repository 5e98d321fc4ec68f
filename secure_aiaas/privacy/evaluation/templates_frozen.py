"""Templates of the FROZEN test split. Written before any tuning; never edit to fit the scrubber.

Formats: letters, lower-case chat, log lines with URLs, JSON, forms, medical notes, bank
messages, international addresses; PII-free: product copy, operations, prose, JSON, finance.
"""

from __future__ import annotations

PII: dict[str, list[str]] = {
    "letter": [
        "Dear {PERSON},\n\nThank you for your letter of {DATE:long}. We have updated your file and will write to you at {STREET}, {POSTCODE} {CITY}.\n\nKind regards,\n{PERSON2}",
        "To whom it may concern,\nI confirm that {PERSON} has lived at {STREET:secondary}, {CITY} since {DATE:long}.\nSigned, {PERSON2:initial}",
        "Hello {PERSON:first},\nyour parcel could not be delivered to {STREET}. Please call {PHONE} to arrange a new slot.\nBest wishes, the courier team",
        "Dear Ms {PERSON:last},\nplease find enclosed the contract. Return a signed copy to {PERSON2} at {EMAIL}.",
        "Mr {PERSON:last} wrote on {DATE:long}: I am moving to {CITY} next month and my new number is {PHONE}.",
    ],
    "chat": [
        "hey its {PERSON:lower} here, can u send the invoice to {EMAIL} pls",
        "{PERSON:lowerfirst}: lol ok see u in {CITY:lower} tomorrow",
        "omg {PERSON:lowerfirst} just texted me from {PHONE}, she's in {CITY:lower} now",
        "my brother {PERSON:lower} lives at {STREET:lower} if you need to drop it off",
        "ask {PERSON:lowerfirst} {PERSON:last}, he knows the wifi code",
        "yo {PERSON:lowerfirst} wheres the report, {PERSON2:lowerfirst} needs it by 5",
        "ok so my card is {CARD} exp 08/29 dont share it",
        "i'm {PERSON:lower} and i was born {DOB:dmy}, is that enough for the form?",
    ],
    "log": [
        "{DATE:iso}T{TIME}:11Z INFO GET /api/v2/accounts?email={EMAIL}&page=2 200 31ms",
        "{DATE:iso} {TIME} WARN login failed for user={EMAIL} from {IP}",
        '127.0.0.1 - - [{DATE:iso}] "GET /reset?token={HEX}&mail={EMAIL:urlenc} HTTP/1.1" 302 0',
        "[{TIME}] worker-{NUM} callback https://hooks.example.org/notify?to={EMAIL}&name={PERSON:first} failed",
        "audit: {ORDER} updated by {PERSON} ({EMAIL}) ip={IP}",
        "{DATE:iso} ERROR payment declined card={CARD:digits} customer={PERSON:first}",
    ],
    "json": [
        '{"customer": {"name": "{PERSON}", "email": "{EMAIL}"}, "order": "{ORDER}", "total": {AMOUNT}}',
        '{"patient": "{PERSON:lastfirst}", "dob": "{DOB:dmy}", "ward": {NUM}}',
        '{"shipping": {"line1": "{STREET}", "city": "{CITY}", "zip": "{POSTCODE}"}, "phone": "{PHONE}"}',
        '{"event": "signup", "user": {"first": "{PERSON:first}", "last": "{PERSON:last}"}, "ip": "{IP}"}',
        '{"payout": {"iban": "{IBAN}", "holder": "{PERSON}"}, "amount": {AMOUNT}}',
        '{"note": "call {PERSON:first} back on {PHONE} about {ORDER}"}',
    ],
    "form": [
        "Name: {PERSON}\nDate of birth: {DOB:dmy}\nAddress: {STREET}, {CITY}\nPhone: {PHONE}",
        "First name: {PERSON:first}\nLast name: {PERSON:last}\nE-mail: {EMAIL}\nSSN: {SSN}",
        "APPLICANT {PERSON:upper} | DOB {DOB:iso} | TOWN {CITY:upper}",
        "Emergency contact ........ {PERSON2}\nRelationship .............. sister\nTelephone ................. {PHONE}",
        "Billing address: {STREET:secondary}\n{POSTCODE} {CITY}\nCard number: {CARD}",
    ],
    "medical": [
        "Pt {PERSON:lastfirst}, DOB {DOB:dmy}, presented with chest pain. Referred by Dr. {PERSON2:last}.",
        "Discharge summary for {PERSON}: stable, follow-up at the {CITY} outpatient clinic in two weeks.",
        "{PERSON:first} {PERSON:last} (born {DOB:long}) reports dizziness since Monday; lives alone at {STREET}.",
        "Nurse note: spoke to {PERSON2:lower} (daughter) on {PHONE}, she will collect {PERSON:first} tomorrow.",
        "Allergy: penicillin. Patient {PERSON:upper}, insurance SSN {SSN}.",
    ],
    "bank": [
        "Transfer of {AMOUNT} EUR to {IBAN:spaced} ({PERSON}) has been executed.",
        "Hi, please refund to my account {IBAN:lowerspaced}, name on account {PERSON:lower}.",
        "Your card ending {NUM} was used at {COMPANY}, {CITY}. Not you? Call {PHONE}.",
        "Standing order for {PERSON:initial}: {AMOUNT} monthly to {IBAN}.",
        "Chargeback on {CARD:dashed} approved; statement sent to {EMAIL}.",
    ],
    "address": [
        "{PERSON}\n{STREET}\n{POSTCODE} {CITY}",
        "Ship to: {PERSON:upper}, {STREET:secondary}, {CITY}, {POSTCODE}",
        "Deliver to {STREET} in {CITY} (ring twice), recipient {PERSON:first}.",
        "New address from next week: {STREET}, {CITY:upper}.",
        "We met {PERSON:first} in {CITY} and then drove to {STREET}.",
    ],
}

PII_FREE: dict[str, list[str]] = {
    "product": [
        "Model {PRODUCT} has a {NUM} hour battery and weighs {NUM} grams.",
        "The {PRODUCT} ships with two cables and a quick-start guide.",
        "Compare {PRODUCT} and {PRODUCT}: the second one adds water resistance.",
        "{PRODUCT} Firmware {NUM}.{NUM} improves Bluetooth pairing.",
        "Customers who bought {PRODUCT} also looked at cases and chargers.",
    ],
    "ops": [
        "Deploy {ORDER} finished at {TIME}, {NUM} pods healthy.",
        "{DATE:iso} {TIME} INFO GET /api/v2/health 200 {NUM}ms",
        "Disk usage on the build runner reached {NUM} percent; old artifacts were pruned.",
        "Retrying the nightly export, attempt {NUM} of 5.",
        "Cache hit ratio dropped to {NUM}% after the release on {DATE:long}.",
    ],
    "prose": [
        "The committee will meet again after the summer break to review the budget.",
        "Please keep the meeting short; we have {NUM} items on the agenda.",
        "Spring arrived late this year, and the orchards flowered in May.",
        "Read the terms carefully before you sign anything.",
        "The museum opens at nine and closes at five on weekdays.",
        "Add two cups of flour, a pinch of salt and stir until smooth.",
    ],
    "json": [
        '{"status": "ok", "items": {NUM}, "next": null}',
        '{"sku": "{PRODUCT}", "price": {AMOUNT}, "currency": "EUR", "stock": {NUM}}',
        '{"job": "{ORDER}", "started": "{DATE:iso}T{TIME}:00Z", "retries": {NUM}}',
    ],
    "finance": [
        "Quarterly revenue grew by {NUM} percent compared with the previous year.",
        "Invoice {ORDER} of {AMOUNT} EUR is due on {DATE:long}.",
        "The exchange rate moved {NUM} basis points overnight.",
    ],
}
