"""PII scrubbing: detection (spans on the original text) then transformation (profile operators).

Public API for the HTTP layer, the pipeline and the CLI::

    store = ProfileStore("policies/privacy.yaml")          # invalid file -> ValueError at start-up
    # The service: detection in worker processes, batched across concurrent requests.
    service = await ScrubberService.start(store, processes=2)      # PrivacyError if it can't
    results = await service.scrub_texts(texts, tenant=t, model=m, keys=TenantKeys(...))
    convo = await service.scrub_conversation(messages, tenant=t)   # one placeholder map
    convo.placeholders.restore(answer)                      # trusted code only; never log it
    await service.scrub_json(obj, tenant=t)                 # strings, numbers and keys
    await service.close()
    # In-process (CLI, tests, batch jobs): the same calls, synchronous.
    scrubber = Scrubber.build(store)
    scrubber.scrub_texts(...), scrubber.scrub_conversation(...), scrubber.scrub_json(...)
    result.text, result.entity_counts(), result.to_dict()   # counts/spans only, never values
    validate_privacy_file(path) -> ["file:line: reason", ...]   # for `secure-aiaas policy check`
    restore(text, key=..., tenant=t)                        # caller side: undo the `encrypt` operator

Bounds: ``ScrubLimits`` (characters per text and per request, texts, JSON depth and leaves); a
violation raises a ``ScrubLimitError`` (an ``InputError``; the size ones also
``PayloadTooLargeError``) before any work. Importing this package loads no model.
"""

from __future__ import annotations

from secure_aiaas.privacy.limits import (
    JsonTooDeepError,
    JsonTooLargeError,
    RequestTooLargeError,
    ScrubLimitError,
    ScrubLimits,
    TextTooLongError,
    TooManyTextsError,
)
from secure_aiaas.privacy.operators import OPERATORS, PlaceholderMap, TenantKeys, restore
from secure_aiaas.privacy.profiles import (
    TIERS,
    PrivacyPolicy,
    Profile,
    ProfileStore,
    load_policy,
    validate_privacy_file,
)
from secure_aiaas.privacy.results import ConversationResult, Entity, JsonScrubResult, ScrubResult
from secure_aiaas.privacy.scrubber import DEFAULT_MODEL, Scrubber
from secure_aiaas.privacy.service import ScrubberService

__all__ = [
    "DEFAULT_MODEL",
    "OPERATORS",
    "TIERS",
    "ConversationResult",
    "Entity",
    "JsonScrubResult",
    "JsonTooDeepError",
    "JsonTooLargeError",
    "PlaceholderMap",
    "PrivacyPolicy",
    "Profile",
    "ProfileStore",
    "RequestTooLargeError",
    "ScrubLimitError",
    "ScrubLimits",
    "ScrubResult",
    "Scrubber",
    "ScrubberService",
    "TenantKeys",
    "TextTooLongError",
    "TooManyTextsError",
    "load_policy",
    "restore",
    "validate_privacy_file",
]
