"""Templates of the FINAL split of the second round (``mixed-final``). FROZEN.

Written and committed before the second round's tuning; never edit to fit the scrubber, never
look at its leaks until the round ends; reported once. Formats: letters, lower-case chat, log
lines with URLs, JSON, forms, medical notes, bank messages, international addresses; PII-free:
product copy, software text (language names that are also given names), clinical text without
names, operations, prose, JSON, finance.
"""

from __future__ import annotations

PII: dict[str, list[str]] = {
    "letter": [
        "Dear Mr {PERSON:last},\n\nWe regret to inform you that your claim dated {DATE:long} was declined. You may appeal in writing to our office.\n\nYours faithfully,\n{PERSON2}",
        "{CITY}, {DATE:long}\n\nDear {PERSON:first},\nit was lovely to see you and {PERSON2:first} last weekend. Write soon!\nLove, Gran",
        "Re: tenancy at {STREET:secondary}, {POSTCODE} {CITY}\nDear {PERSON},\nthe landlord has agreed to repair the boiler before the end of the month.",
        "Dear Dr {PERSON:last},\nI am writing on behalf of my mother, {PERSON2}, who cannot attend her appointment. You can reach me at {EMAIL}.",
        "Good morning {PERSON},\nthis is to confirm that your account manager is now {PERSON2:initial}. Our address has changed to {STREET}, {CITY}.",
        "Dear Sir or Madam,\nplease update the records of {PERSON:lastfirst}, now residing at {STREET}, {POSTCODE} {CITY:upper}.\nRegards, {PERSON2:first}",
        "Hi {PERSON:first}!\nThanks again for hosting us in {CITY}. {PERSON2:first} says hello.\nCheers",
    ],
    "chat": [
        "hey {PERSON:lowerfirst} are u coming to {CITY:lower} this weekend??",
        "lol {PERSON:lowerfirst} forgot her keys again",
        "talked to {PERSON:lowerlast} yesterday, he moved to {CITY:lower}",
        "can someone pick up {PERSON:lowerfirst} from the airport at 6",
        "my new address is {STREET:lower}, pls update it",
        "ok {PERSON:lower} will bring the cake, {PERSON2:lowerfirst} does drinks",
        "im in {CITY:lower} until friday then heading home",
        "send it to {EMAIL} and cc {PERSON2:lowerfirst}",
        "{PERSON:lowerfirst} {PERSON:lowerlast} is the new guy in accounting btw",
        "thanks {PERSON:lowerfirst}, the number is {PHONE} if u need it",
        "wait is {PERSON2:lowerfirst} still living in {CITY:lower}?",
    ],
    "log": [
        "{DATE:iso} {TIME}:07 INFO  GET /v3/search?q=shoes&email={EMAIL}&lang=en 200 18ms",
        "{DATE:iso}T{TIME}:44Z DEBUG session opened user={PERSON:first} ip={IP}",
        "POST https://api.example.net/subscribe?address={EMAIL:urlenc}&src=footer -> 204",
        "{TIME} ERROR mailer: bounce from {EMAIL} (mailbox full)",
        "[{DATE:iso} {TIME}] geo: request from {IP} resolved to {CITY}",
        "{DATE:iso} WARN crm.sync contact \"{PERSON}\" has no phone, skipped",
        "GET /export?customer={PERSON:first}%20{PERSON:last}&format=csv HTTP/2 200",
        "{DATE:iso} {TIME} INFO payout iban={IBAN} holder={PERSON:last} status=queued",
    ],
    "json": [
        '{"user": {"firstName": "{PERSON:first}", "lastName": "{PERSON:last}", "mail": "{EMAIL}"}}',
        '{"delivery": {"recipient": "{PERSON}", "addr": "{STREET}", "town": "{CITY}", "zip": "{POSTCODE}"}}',
        '{"message": "{PERSON:first} asked to move the meeting to {CITY}", "priority": {NUM}}',
        '{"account": {"owner": "{PERSON:upper}", "iban": "{IBAN:spaced}"}, "currency": "EUR"}',
        '{"visitor": {"ip": "{IP}", "city": "{CITY}"}, "page": "/pricing"}',
        '{"patient": {"name": "{PERSON}", "birthDate": "{DOB:iso}"}, "ward": "B{NUM}"}',
        '{"comment": "ship to {STREET:secondary} before {DATE:iso}", "order": "{ORDER}"}',
    ],
    "form": [
        "Family name: {PERSON:last}\nFirst name(s): {PERSON:first}\nDate of birth: {DOB:dmy}\nPlace of residence: {CITY}",
        "NAME: {PERSON:upper}\nADDRESS: {STREET:upper}\nCITY: {CITY:upper}",
        "Applicant: {PERSON}  Tel: {PHONE}  E-mail: {EMAIL}",
        "Guest 1: {PERSON}\nGuest 2: {PERSON2}\nArrival: {DATE:iso}",
        "Policy holder ..... {PERSON:lastfirst}\nBorn ............ {DOB:dotted}\nSSN ............. {SSN}",
        "Correspondence address:\n{STREET:secondary}\n{POSTCODE} {CITY}",
    ],
    "medical": [
        "{PERSON:last}, {PERSON:first} — 58 y/o, admitted with pneumonia, responding to antibiotics.",
        "Referral: {PERSON} (DOB {DOB:dmy}) to cardiology, {CITY} General. Referring GP: Dr {PERSON2:last}.",
        "Home visit at {STREET}: patient {PERSON:first} was alert and oriented; wound healing well.",
        "Spoke with {PERSON2:first} ({PERSON:first}'s son) by phone on {PHONE}; he agrees with the plan.",
        "Lab results for {PERSON:upper} sent to {EMAIL} on request.",
        "pt {PERSON:lower} c/o headache x3 days, no fever. lives in {CITY:lower}.",
        "Vaccination record: {PERSON}, born {DOB:long}, second dose given today.",
    ],
    "bank": [
        "sent {AMOUNT} to {PERSON:lowerfirst} for the concert tickets",
        "Incoming transfer {AMOUNT} EUR from {PERSON:upper}, reference rent {DATE:iso}.",
        "pls refund {AMOUNT} to {IBAN:lowerspaced}, account holder {PERSON:lower}",
        "Direct debit mandate signed by {PERSON} for account {IBAN}.",
        "Card {CARD:spaced} was declined at a merchant in {CITY}.",
        "Beneficiary changed to {PERSON:initial}, {STREET}, {CITY}.",
        "repaid {PERSON:lowerfirst} {AMOUNT} for dinner in {CITY:lower}",
        "Your new card will be posted to {STREET:secondary}. Questions? {PHONE}",
    ],
    "address": [
        "{PERSON}\n{STREET:secondary}\n{POSTCODE} {CITY}",
        "Delivery address: {STREET}, {POSTCODE} {CITY}",
        "Return to sender: {PERSON:initial}, {STREET}, {CITY:upper}",
        "Pickup point moved to {STREET} ({CITY}).",
        "c/o {PERSON}, {STREET}, {CITY}",
        "We are now at {STREET:secondary}, {CITY} — see you there!",
        "{PERSON:upper}\n{STREET:upper}\n{POSTCODE} {CITY:upper}",
    ],
}

PII_FREE: dict[str, list[str]] = {
    "product": [
        "Model {PRODUCT} has a {NUM} mAh battery and a matte finish.",
        "The {PRODUCT} is back in stock in three colours.",
        "{PRODUCT} vs {PRODUCT}: which one should you buy?",
        "Meet {PRODUCT}, our lightest laptop yet.",
        "Firmware update {NUM}.{NUM} for {PRODUCT} fixes the charging bug.",
    ],
    "software": [
        "We rewrote the parser in {LANG} and cut memory use by half.",
        "Is {LANG} a good first language for data science?",
        "The {LANG} bindings are generated from the C headers.",
        "Install {LANG} {NUM}.{NUM} before running the test suite.",
        "Benchmarks: {LANG} was {NUM}% faster than {LANG} on this workload.",
        "Our CI runs {LANG} and {LANG} jobs in parallel.",
    ],
    "clinical": [
        "Patient presented with shortness of breath; oxygen saturation {NUM}% on room air.",
        "Continue metformin 500 mg twice daily and review in {NUM} weeks.",
        "No known drug allergies. Blood pressure stable.",
        "Post-operative day {NUM}: afebrile, mobilising with assistance.",
    ],
    "ops": [
        "{DATE:iso} {TIME} INFO GET /api/v3/items?page={NUM} 200 {NUM}ms",
        "Incident {ORDER} resolved at {TIME}; root cause was an expired certificate.",
        "Nightly job finished in {NUM} minutes with {NUM} warnings.",
        "Scaling the worker pool from {NUM} to {NUM} replicas.",
    ],
    "prose": [
        "The bakery on the corner closes early on Sundays.",
        "We walked along the river until it started to rain.",
        "Please bring a packed lunch and comfortable shoes.",
        "The report is due at the end of the quarter.",
        "Turn left after the bridge and follow the signs to the car park.",
    ],
    "json": [
        '{"ok": true, "count": {NUM}, "cursor": "{HEX}"}',
        '{"model": "{PRODUCT}", "price": {AMOUNT}, "inStock": true}',
        '{"language": "{LANG}", "stars": {NUM}, "license": "MIT"}',
    ],
    "finance": [
        "Operating margin improved to {NUM} percent in the last quarter.",
        "Invoice {ORDER} for {AMOUNT} EUR remains unpaid.",
        "The fund returned {NUM}.{NUM}% after fees.",
    ],
}
