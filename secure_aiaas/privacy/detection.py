"""Detection: texts in, spans on the ORIGINAL texts out (no transformation here).

One ``Detector`` per process (the scrubber's, or a worker's). For a batch of texts it

1. folds each text for detection (``normalization``: format characters, NFKC, confusables);
2. runs spaCy (tokens + NER) over the whole batch with ``nlp.pipe``;
3. in the accurate tier, runs the PII model over the whole batch (one batched pass);
4. per text: Presidio's analyzer with our recognizers, then the model's spans, then the span
   rules (key hints, trimming, extension, propagation, birth dates, allow list);
5. maps the spans back to the original text and resolves overlaps.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from secure_aiaas.privacy import span_rules as rules
from secure_aiaas.privacy.normalization import Folded, fold
from secure_aiaas.privacy.pii_model import ModelSpan, PiiModel, Prediction
from secure_aiaas.privacy.profiles import Profile
from secure_aiaas.privacy.word_evidence import (
    initial_names,
    lower_after_person_verb,
    word_evidence,
)

MODEL_SOURCE = "PiiModel"
NER_SUPPORT = 0.05  # the PII model's probability that corroborates a spaCy NER span


class Detector:
    """spaCy + Presidio analyzer (+ the PII model for the accurate tier), loaded once."""

    def __init__(
        self,
        *,
        nlp: Any,
        analyzer: Any,
        engine: Any,
        pii_model: PiiModel | None,
        batch_size: int,
        lexicon: frozenset[str] = frozenset(),
    ) -> None:
        self.nlp, self.analyzer, self.engine = nlp, analyzer, engine
        self.lexicon = lexicon
        self.pii_model = pii_model
        self.batch_size = batch_size
        self.lock = threading.Lock()  # spaCy, Presidio and the ONNX session: one batch at a time
        # Per-profile recognizers and allow pattern, keyed by the profile's content: workers get
        # a fresh copy of the profile with every batch.
        self._per_profile: dict[str, tuple[list[Any], Any]] = {}

    @classmethod
    def load(
        cls,
        model_name: str,
        *,
        pii_model: str | None = "int8",
        batch_size: int = 128,
        pii_graph: bytes | None = None,
    ) -> Detector:
        """Load spaCy, build the analyzer and (unless ``pii_model`` is None) the PII model.

        ``pii_graph``: an already converted model graph (workers get the parent's, so the int8
        conversion runs once).
        """
        from secure_aiaas.privacy import presidio_engine

        nlp, lexicon = presidio_engine.load_nlp_and_lexicon(model_name)
        analyzer, engine = presidio_engine.build_analyzer(nlp)
        model = None
        if pii_model is not None:
            model = PiiModel(pii_model, graph=pii_graph)
        return cls(
            nlp=nlp,
            analyzer=analyzer,
            engine=engine,
            pii_model=model,
            batch_size=batch_size,
            lexicon=lexicon,
        )

    def detect(
        self, texts: Sequence[str], keys_hint: Sequence[str | None], profile: Profile
    ) -> list[list[rules.Span]]:
        """Spans per text, offsets in the original texts.

        A text that is itself a JSON object or array is detected leaf by leaf (each string and
        number alone, its field name as context) and the spans are mapped back into the text.
        """
        from secure_aiaas.privacy.structured import json_text_leaves

        flat: list[str] = []
        hints: list[str | None] = []
        plan: list[tuple[int, list[tuple[int, int, bool]] | None]] = []  # per text: first, leaves
        for text, key in zip(texts, keys_hint):
            leaves = json_text_leaves(text) if "{" in text[:1] or "[" in text[:1] else None
            if leaves is None:
                plan.append((len(flat), None))
                flat.append(text)
                hints.append(key)
                continue
            plan.append((len(flat), [(lf.start, lf.end, "\\" in lf.text) for lf in leaves]))
            flat.extend(lf.text for lf in leaves)
            hints.extend(lf.field_name for lf in leaves)
        found = self._detect_flat(flat, hints, profile)
        out: list[list[rules.Span]] = []
        for first, leaf_offsets in plan:
            if leaf_offsets is None:
                out.append(found[first])
                continue
            spans: list[rules.Span] = []
            for n, (start, end, escaped) in enumerate(leaf_offsets):
                for s in found[first + n]:
                    if escaped:  # offsets inside an escaped string do not map: take it whole
                        spans.append(rules.Span(s.entity_type, start, end, s.score, s.source))
                    else:
                        spans.append(
                            rules.Span(
                                s.entity_type, start + s.start, start + s.end, s.score, s.source
                            )
                        )
            out.append(rules.resolve_overlaps(spans))
        return out

    def _detect_flat(
        self, texts: Sequence[str], keys_hint: Sequence[str | None], profile: Profile
    ) -> list[list[rules.Span]]:
        from secure_aiaas.privacy.profile_recognizers import profile_recognizers

        cache_key = repr(profile)
        cached = self._per_profile.get(cache_key)
        if cached is None:
            if len(self._per_profile) >= 64:  # hot reloads: keep the cache bounded
                self._per_profile.clear()
            cached = self._per_profile[cache_key] = (
                profile_recognizers(profile),
                rules.allow_pattern(profile.allow_list),
            )
        custom, allow = cached
        entities = sorted(profile.thresholds)
        min_score = min(profile.thresholds.values(), default=0.0)
        folded = [fold(t) for t in texts]
        plain = [f.text for f in folded]
        out: list[list[rules.Span]] = []
        with self.lock:
            use_model = profile.tier == "accurate" and self.pii_model is not None
            model_spans = (
                _predict_with_keys(self.pii_model, plain, keys_hint)
                if use_model and self.pii_model
                else None
            )
            docs: Iterator[Any] = self.nlp.pipe(plain, batch_size=self.batch_size)
            for i, (f, doc, key) in enumerate(zip(folded, docs, keys_hint)):
                context = _key_words(key)
                raw = self.analyzer.analyze(
                    f.text,
                    language="en",
                    entities=entities,
                    nlp_artifacts=self.engine.artifacts(doc),
                    score_threshold=min_score,
                    ad_hoc_recognizers=custom or None,
                    context=context or None,
                )
                spans = [
                    rules.Span(
                        r.entity_type,
                        r.start,
                        r.end,
                        r.score,
                        r.recognition_metadata.get("recognizer_name", ""),
                    )
                    for r in raw
                    if r.score >= profile.thresholds.get(r.entity_type, 1.01)
                ]
                if model_spans is not None:
                    prediction = model_spans[i]
                    # spaCy's small model calls many capitalised words a person or a place
                    # ("X22 Edition includes"): with the PII model loaded, such a span stands
                    # only where the PII model sees at least a little of the same.
                    spans = [
                        s
                        for s in spans
                        if s.source != rules.NER_SOURCE
                        or s.entity_type not in ("PERSON", "LOCATION")
                        or prediction.support(s.entity_type, s.start, s.end) >= NER_SUPPORT
                    ]
                    key_context = " ".join(context)
                    evidence = model_evidence(f.text, prediction.spans, self.lexicon, key_context)
                    evidence += word_evidence(
                        f.text, prediction.person, prediction.place, self.lexicon, key_context
                    )
                    evidence += initial_names(f.text, self.lexicon)
                    evidence += lower_after_person_verb(f.text, self.lexicon)
                    if context and NON_PERSONAL_KEYS.intersection(context):
                        # {"runtime": "Phoenix"}, {"product": "Tunis 14 SE"}: the field says
                        # what the value is, and it is no person or place.
                        evidence = [
                            s for s in evidence if s.entity_type not in ("PERSON", "LOCATION")
                        ]
                        spans = [
                            s
                            for s in spans
                            if s.source != rules.NER_SOURCE
                            or s.entity_type not in ("PERSON", "LOCATION")
                        ]
                    spans.extend(
                        s
                        for s in evidence
                        if s.score >= profile.thresholds.get(s.entity_type, 1.01)
                    )
                out.append(_finish(f, spans, key, profile, allow))
        return out


def _finish(
    f: Folded, spans: list[rules.Span], key: str | None, profile: Profile, allow: Any
) -> list[rules.Span]:
    text = f.text
    spans = rules.trim(text, spans)
    spans.extend(rules.key_value_pairs(text))
    hint = rules.key_hint(key, text)
    if hint is not None and hint.entity_type in profile.thresholds:
        spans.append(hint)
    spans = rules.drop_allowed(text, spans, allow)  # before propagation: allowed names don't spread
    spans = rules.extend_secondary(text, spans)
    spans = rules.propagate(text, rules.extend_addresses(text, rules.extend_names(text, spans)))
    if "DATE_OF_BIRTH" in profile.thresholds:
        spans = rules.dates_after_names(text, spans)
    spans = rules.drop_allowed(text, spans, allow)
    spans = [s for s in spans if s.entity_type in profile.thresholds]
    mapped = []
    for s in rules.resolve_overlaps(spans):
        start, end = f.to_original(s.start, s.end)
        if end > start:
            mapped.append(rules.Span(s.entity_type, start, end, s.score, s.source))
    return rules.resolve_overlaps(mapped)


_DIGIT = re.compile(r"\d")
_ALPHA_WORD = re.compile(r"[^\W\d_]+")


_SECONDARY_WORD = re.compile(
    r"(?i)^(?:apt|apartment|suite|ste|unit|flat|studio|room|rm|floor|fl|bldg|building|block|"
    r"box|#)\b"
)


# A lone lower-case word is a name or a place only when the model is fairly sure, and an
# English word ("limerick", "strict") only when it is very sure (set on the dev split).
LOWER_WORD_SCORE = 0.75
LEXICON_WORD_SCORE = 0.95


def model_evidence(
    text: str, spans: list[ModelSpan], lexicon: frozenset[str] = frozenset(), context: str = ""
) -> list[rules.Span]:
    """The model's spans that we trust, as rule spans.

    A bare building number or postcode (no street or town joined to it) is dropped: on its own
    it is a number in a product text as often as part of an address; so is a "secondary
    address" that does not start with an apartment/suite word. Person spans with digits or an
    inner capital (``MongoDB``) are product names, and so is a lone word in a text about
    software ("from Redis to Postgres"); a lone lower-case word needs ``LOWER_WORD_SCORE``, an
    English one ("limerick", "strict") ``LEXICON_WORD_SCORE``; phone and e-mail spans must look
    like one.
    """
    tech_text: bool | None = None
    out: list[rules.Span] = []
    for s in spans:
        value = text[s.start : s.end]
        # One word, perhaps with a number ("Swift 6", "Zolara 5"): in a text about software,
        # a product.
        if s.entity_type in ("PERSON", "LOCATION") and len(_ALPHA_WORD.findall(value)) <= 1:
            if tech_text is None:
                tech_text = rules.is_tech_text(text + " " + context)
            if tech_text:
                continue
        if s.start > 0 and text[s.start - 1] in "/\\" and s.entity_type in ("PERSON", "LOCATION"):
            continue  # a path segment ("/api/v1/jobs 201")
        if (
            s.entity_type in ("PERSON", "LOCATION")
            and value.islower()
            and " " not in value
            and (
                s.score < LOWER_WORD_SCORE
                or (s.score < LEXICON_WORD_SCORE and _is_english_word(value, lexicon))
            )
        ):
            continue
        if s.entity_type == "PERSON":
            if _DIGIT.search(value) or len(value.strip()) < 2 or rules.is_camel_case(value):
                continue
        elif s.entity_type == "LOCATION":
            if s.part in ("number", "zip") or not any(c.isalpha() for c in value):
                continue
            if s.part == "secondary" and not _SECONDARY_WORD.match(value):
                continue
            # "Kappa46", "X22": product codes, not streets (street names carry no digits).
            if all(_DIGIT.search(w) for w in value.split() if any(c.isalpha() for c in w)):
                continue
        elif s.entity_type == "PHONE_NUMBER":
            if len(_DIGIT.findall(value)) < 7:
                continue
        elif s.entity_type == "EMAIL_ADDRESS":
            if "@" not in value and "%40" not in value:
                continue
        out.append(rules.Span(s.entity_type, s.start, s.end, s.score, MODEL_SOURCE))
    return out


# JSON field names whose values are products, software or settings, never people or places.
NON_PERSONAL_KEYS = frozenset(
    """
    product products sku model models runtime language lang framework version package library
    engine browser os platform tool brand device app plugin mode status type kind category
    """.split()
)


def _predict_with_keys(
    model: PiiModel, texts: Sequence[str], keys: Sequence[str | None]
) -> list[Prediction]:
    """Predictions, a JSON leaf read after its field name ("given name: Ujamaa").

    Alone, "Ujamaa" or "Chukwuemeka Obi-Okoro" is a word without context and the model hardly
    sees a name; after its field name it does. Offsets are mapped back onto the leaf.
    """
    prefixes = [f"{' '.join(_key_words(k))}: " if k and _key_words(k) else "" for k in keys]
    predictions = model.predict([p + t for p, t in zip(prefixes, texts)])
    return [_shift(pred, len(p)) if p else pred for pred, p in zip(predictions, prefixes)]


def _shift(pred: Prediction, n: int) -> Prediction:
    def tokens(items: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
        return [(s - n, e - n, p) for s, e, p in items if s >= n]

    spans = [
        ModelSpan(s.entity_type, s.part, s.start - n, s.end - n, s.score)
        for s in pred.spans
        if s.start >= n
    ]
    return Prediction(spans, tokens(pred.person), tokens(pred.place))


def _is_english_word(word: str, lexicon: frozenset[str]) -> bool:
    w = word.strip(".,;:!?'\"()")
    if w in lexicon:
        return True
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ing", "")):
        if w.endswith(suffix) and w[: -len(suffix)] + repl in lexicon:
            return True
    return False


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z])(?=[A-Z])")


def _key_words(key: str | None) -> list[str]:
    """ "givenName", "first_name", "e-mail" -> their words, lower-case."""
    if not key:
        return []
    return [w for w in re.split(r"[^a-z0-9]+", _CAMEL_BOUNDARY.sub("_", key).lower()) if w]
