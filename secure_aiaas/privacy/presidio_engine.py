"""Builds the Presidio analyzer over a slim spaCy pipeline (the only spaCy/Presidio set-up).

Detection needs tokens and NER only, so the tagger, parser, attribute ruler and lemmatizer are
left out; context words are matched on lower-cased tokens instead of lemmas.
"""

from __future__ import annotations

import logging
from typing import Any

import spacy
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import IpRecognizer, UsSsnRecognizer
from spacy.language import Language
from spacy.tokens import Doc

from secure_aiaas.config import DEFAULT_SPACY_MODEL
from secure_aiaas.privacy.offline import make_tldextract_offline
from secure_aiaas.privacy.recognizers import (
    DateOfBirthRecognizer,
    DiacriticNameRecognizer,
    EmailAddressRecognizer,
    FullNamePhraseRecognizer,
    IbanCodeRecognizer,
    LocationContextRecognizer,
    NameBeforeVerbRecognizer,
    PaymentCardRecognizer,
    PersonContextRecognizer,
    PhoneNumberRecognizer,
    StreetAddressRecognizer,
)
from secure_aiaas.privacy.recognizers.spacy_filtered import FilteredSpacyRecognizer

DEFAULT_MODEL = DEFAULT_SPACY_MODEL
KEEP_COMPONENTS = ("tok2vec", "ner")
# spaCy labels that hide a person or a place in our data; ORG too, since the small model
# labels many unseen surnames as organisations (precision is kept by the thresholds).
NER_MAPPING = {
    "PERSON": "PERSON",
    "PER": "PERSON",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "FAC": "LOCATION",
    "NORP": "NRP",
    "ORG": "ORGANIZATION",
    "DATE": "DATE_TIME",
}


class SlimSpacyEngine(SpacyNlpEngine):
    """SpacyNlpEngine around an already-loaded pipeline; lemmas are lower-cased tokens."""

    def __init__(self, nlp: Language, ner_config: NerModelConfiguration) -> None:
        super().__init__(
            models=[{"lang_code": "en", "model_name": nlp.meta.get("name", "custom")}],
            ner_model_configuration=ner_config,
        )
        # Presidio types this attribute as None until load(); we hand the pipeline in instead.
        self.nlp = {"en": nlp}  # type: ignore[assignment]

    def load(self) -> None:  # already loaded: never resolve or download a model by name
        pass

    def _doc_to_nlp_artifact(self, doc: Doc, language: str) -> NlpArtifacts:
        entities, scores = self._get_updated_entities(
            list(doc.ents), [self.ner_model_configuration.default_score or 0.85] * len(doc.ents)
        )
        return NlpArtifacts(
            entities=entities,
            tokens=doc,
            tokens_indices=[t.idx for t in doc],
            lemmas=[t.lower_ for t in doc],
            nlp_engine=self,
            language=language,
            scores=scores,
        )

    def artifacts(self, doc: Doc) -> NlpArtifacts:
        """NlpArtifacts for a doc produced by ``nlp.pipe``."""
        return self._doc_to_nlp_artifact(doc, "en")


def load_nlp(model_name: str) -> Language:
    """Load the spaCy package by name with only the components detection needs."""
    return load_nlp_and_lexicon(model_name)[0]


def load_nlp_and_lexicon(model_name: str) -> tuple[Language, frozenset[str]]:
    """The slim pipeline, and the English words of the model's lemmatizer (WordNet's index of
    nouns, verbs, adjectives and adverbs: ~83,000 lower-case words), read before the
    lemmatizer is removed."""
    nlp = spacy.load(model_name)
    lexicon: set[str] = set()
    if "lemmatizer" in nlp.pipe_names:
        lookups = nlp.get_pipe("lemmatizer").lookups  # type: ignore[attr-defined]
        if lookups.has_table("lemma_index"):
            for words in lookups.get_table("lemma_index").values():
                lexicon.update(w for w in words if w.isalpha())
    drop = [name for name in nlp.pipe_names if name not in KEEP_COMPONENTS]
    for name in drop:
        nlp.remove_pipe(name)
    return nlp, frozenset(lexicon)


class _QuietFilter(logging.Filter):
    """Drops Presidio's DEBUG/INFO records: at DEBUG it logs context words taken from the input."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def silence_presidio_logs() -> None:
    """Keep input text out of logs whatever level the service configures later; idempotent."""
    for name in ("presidio-analyzer", "presidio-anonymizer"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        if not any(isinstance(f, _QuietFilter) for f in logger.filters):
            logger.addFilter(_QuietFilter())


def build_analyzer(nlp: Language) -> tuple[AnalyzerEngine, SlimSpacyEngine]:
    """Our analyzer: slim NLP engine, two of Presidio's recognizers, and our own.

    Presidio's e-mail, IBAN and card recognizers are replaced by ours (linear-time RE2 patterns,
    lower-case IBANs, URL-encoded addresses, every card issuer range); its SSN and IP
    recognizers are kept (bounded patterns, tested for linear growth in tests/privacy).
    """
    make_tldextract_offline()
    silence_presidio_logs()
    ner_config = NerModelConfiguration(
        model_to_presidio_entity_mapping=dict(NER_MAPPING),
        # spaCy labels that are never personal data: dropped without a warning per entity
        labels_to_ignore=[
            "CARDINAL",
            "ORDINAL",
            "QUANTITY",
            "MONEY",
            "PERCENT",
            "TIME",
            "LANGUAGE",
            "PRODUCT",
            "EVENT",
            "WORK_OF_ART",
            "LAW",
        ],
        low_score_entity_names=[],
    )
    engine = SlimSpacyEngine(nlp, ner_config)
    registry = RecognizerRegistry(supported_languages=["en"])
    recognizers: list[Any] = [
        FilteredSpacyRecognizer(["PERSON", "LOCATION", "NRP", "ORGANIZATION", "DATE_TIME"]),
        EmailAddressRecognizer(),
        IbanCodeRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        PhoneNumberRecognizer(),
        PersonContextRecognizer(),
        StreetAddressRecognizer(),
        DateOfBirthRecognizer(),
        PaymentCardRecognizer(),
        LocationContextRecognizer(),
        DiacriticNameRecognizer(),
        NameBeforeVerbRecognizer(),
        FullNamePhraseRecognizer(),
    ]
    for recognizer in recognizers:
        registry.add_recognizer(recognizer)
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])
    return analyzer, engine


def build_presidio_default(model_name: str = DEFAULT_MODEL) -> AnalyzerEngine:
    """Presidio's default AnalyzerEngine, with the model we ship in place of en_core_web_lg."""
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    make_tldextract_offline()
    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": model_name}],
        }
    )
    return AnalyzerEngine(nlp_engine=provider.create_engine())
