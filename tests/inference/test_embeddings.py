"""text-embed: offline MiniLM, 384-dim unit vectors that rank paraphrases above strangers."""

from __future__ import annotations

import numpy as np
import pytest

from secure_aiaas.inference import ModelRegistry

SENTENCES = [
    "How do I reset my password?",
    "I forgot my password and need to change it.",
    "The weather is sunny and warm today.",
]


def test_shape_and_norm(text_embed) -> None:  # type: ignore[no-untyped-def]
    vectors = text_embed.predict(SENTENCES)["embedding"]
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_paraphrases_are_closer_than_unrelated(text_embed) -> None:  # type: ignore[no-untyped-def]
    a, b, c = text_embed.predict(SENTENCES)["embedding"]
    assert float(a @ b) > float(a @ c) + 0.3


def test_padding_does_not_change_embeddings(text_embed) -> None:  # type: ignore[no-untyped-def]
    alone = text_embed.predict(["short"])["embedding"][0]
    padded = text_embed.predict(["short", "a much longer sentence " * 20])["embedding"][0]
    np.testing.assert_allclose(alone, padded, atol=1e-5)


def test_manifest_and_probe_metrics(registry: ModelRegistry) -> None:
    manifest = registry.show("text-embed")
    assert manifest.outputs[0].shape == [-1, 384]
    assert set(manifest.assets) == {"tokenizer.json"}
    assert manifest.metrics["probe_pairs_ranked_correctly"] == 1.0


def test_matches_sentence_transformers_reference(text_embed) -> None:  # type: ignore[no-untyped-def]
    """Our encoder against the upstream pipeline, both from the same local files (offline)."""
    st = pytest.importorskip("sentence_transformers")
    from secure_aiaas.inference.embeddings import packaged_model_dir

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        try:
            reference = st.SentenceTransformer(str(packaged_model_dir()), device="cpu")
        except Exception as exc:  # noqa: BLE001 (an incompatible upstream release)
            pytest.skip(f"sentence-transformers could not load the local model: {type(exc)}")
        expected = reference.encode(SENTENCES, normalize_embeddings=True)
    ours = text_embed.predict(SENTENCES)["embedding"]
    np.testing.assert_allclose(ours, expected, atol=1e-5)
