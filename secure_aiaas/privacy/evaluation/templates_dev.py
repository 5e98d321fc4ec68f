"""Templates of the DEV split (tuned on). Separate from the frozen split's templates."""

from __future__ import annotations

PII: dict[str, list[str]] = {
    "letter": [
        "Dear Mrs {PERSON:last},\nwe received your complaint and will reply to {STREET}, {CITY} within ten days.\nYours sincerely,\n{PERSON2}",
        "Hi {PERSON:first}, thanks for visiting our store in {CITY}. Your loyalty number is linked to {EMAIL}.",
        "Dear {PERSON:first} {PERSON:last}, your appointment on {DATE:long} is confirmed. Questions? {PHONE}",
        "Attn. {PERSON2}: please forward this to {PERSON:initial} at the {CITY} office.",
    ],
    "chat": [
        "hi, {PERSON:lower} here, i can't log in with {EMAIL}",
        "can you ring {PERSON:lowerfirst}? number is {PHONE}",
        "we're staying in {CITY:lower} until sunday, then back home",
        "{PERSON:lowerfirst} said the keys are at {STREET:lower}",
        "thx {PERSON:lowerfirst}!! see you at the station",
        "born {DOB:dmy} if the clinic asks, surname {PERSON:last}",
    ],
    "log": [
        "{DATE:iso} {TIME} INFO POST /v1/users/invite?address={EMAIL} 201",
        "sshd: accepted key for deploy from {IP} port {NUM}",
        "GET /profile?user={EMAIL:urlenc}&tab=billing 200 in {NUM}ms",
        "notify: sent sms to {PHONE} for {ORDER}",
        "{TIME} DEBUG checkout user={PERSON:first} iban={IBAN}",
    ],
    "json": [
        '{"contact": {"full_name": "{PERSON}", "mobile": "{PHONE}"}, "ticket": "{ORDER}"}',
        '{"address": {"street": "{STREET}", "town": "{CITY}"}, "ok": true}',
        '{"members": [{"name": "{PERSON}"}, {"name": "{PERSON2}"}], "count": 2}',
        '{"card": {CARD:digits}, "holder": "{PERSON:upper}"}',
        '{"{EMAIL}": "subscribed", "source": "newsletter"}',
    ],
    "form": [
        "Surname: {PERSON:last}\nGiven name: {PERSON:first}\nBirth date: {DOB:dotted}\nCity: {CITY}",
        "Full name | {PERSON}\nEmail | {EMAIL}\nIBAN | {IBAN:spaced}",
        "Customer: {PERSON:lastfirst}; Social Security: {SSN}; Phone: {PHONE}",
    ],
    "medical": [
        "{PERSON} was admitted on {DATE:long} with a fractured wrist; GP is Dr {PERSON2:last}.",
        "Patient: {PERSON:lower}, d.o.b. {DOB:iso}, allergic to latex.",
        "Follow-up call with {PERSON:first}'s husband {PERSON2:first} on {PHONE}.",
    ],
    "bank": [
        "Payment of {AMOUNT} GBP received from {PERSON:upper} (IBAN {IBAN}).",
        "pls pay {PERSON:lower} back, iban {IBAN:lowerspaced}",
        "Card {CARD:spaced} blocked after suspicious use in {CITY}.",
    ],
    "address": [
        "{STREET}\n{POSTCODE} {CITY}",
        "Return address: {PERSON:initial}, {STREET:secondary}, {CITY}",
        "Our new office: {STREET}, {POSTCODE} {CITY:upper}",
    ],
}

PII_FREE: dict[str, list[str]] = {
    "product": [
        "The new {PRODUCT} charges in {NUM} minutes.",
        "{PRODUCT} Edition includes a carrying case.",
        "Upgrade from {PRODUCT} to {PRODUCT} for better cameras.",
    ],
    "ops": [
        "Rollout {ORDER} paused at {TIME} because error rate exceeded {NUM}%.",
        "{DATE:iso} {TIME} WARN queue depth {NUM} above threshold",
        "Backups completed; {NUM} snapshots retained.",
    ],
    "prose": [
        "Remember to water the plants twice a week during the heatwave.",
        "The train was delayed by {NUM} minutes because of signal works.",
        "Our team meets every Tuesday to plan the next sprint.",
    ],
    "json": [
        '{"enabled": true, "threshold": {NUM}, "mode": "strict"}',
        '{"product": "{PRODUCT}", "rating": 4.5, "reviews": {NUM}}',
    ],
    "finance": [
        "Order {ORDER} totalling {AMOUNT} USD was shipped on {DATE:long}.",
        "Interest rates remain unchanged at {NUM} basis points above base.",
    ],
}
