"""``secure-aiaas models list|show|register|remove|train``.

Every command takes ``--data-dir`` (env ``SAIAAS_DATA_DIR``, default ``data``) and ``--json``
(print exactly one JSON object on stdout; errors become ``{"error", "detail"}`` with exit 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from secure_aiaas.cli._common import admin_action
from secure_aiaas.errors import ServiceError

app = typer.Typer(help="Manage models in the registry.", no_args_is_help=True)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar=["SAIAAS_MODELS_DIR", "SAIAAS_DATA_DIR"],
        help="Data directory (models/ inside).",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
VersionOpt = Annotated[str | None, typer.Option("--version", "-v", help="Default: the latest.")]


def _emit(as_json: bool, payload: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(payload, sort_keys=True) if as_json else text)


def _fail(as_json: bool, exc: ServiceError) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"error": exc.code, "detail": exc.public_message}))
    else:
        typer.echo(f"error: {exc.public_message}", err=True)
    raise typer.Exit(1)


def _model_object(name: object) -> str:
    """The audited object of a model command: the name only once it is a valid one."""
    from secure_aiaas.names import MODEL_RE

    return f"model:{name}" if isinstance(name, str) and MODEL_RE.match(name) else "model:~invalid"


def _registry(data_dir: Path) -> Any:
    from secure_aiaas.inference.registry import ModelRegistry

    return ModelRegistry(data_dir)


@app.command("list")
def list_models(data_dir: DataDir = Path("data"), as_json: JsonFlag = False) -> None:
    """List every registered model version."""
    manifests = _registry(data_dir).list()
    rows = [m.summary() for m in manifests]
    lines = [f"{'NAME':<20} {'VERSION':<8} {'TASK':<22} {'HE':<4} TEST ACCURACY"]
    for m in manifests:
        accuracy = m.metrics.get("test_accuracy")
        shown = f"{accuracy:.4f}" if accuracy is not None else "-"
        he = "yes" if m.he_compatible else "no"
        lines.append(f"{m.name:<20} {m.version:<8} {m.task:<22} {he:<4} {shown}")
    _emit(as_json, {"models": rows}, "\n".join(lines) if rows else "no models registered")


@app.command("show")
def show(
    name: str,
    version: VersionOpt = None,
    data_dir: DataDir = Path("data"),
    as_json: JsonFlag = False,
    verify: Annotated[bool, typer.Option(help="Also check the SHA-256 of every file.")] = False,
) -> None:
    """Show a model's manifest."""
    from secure_aiaas.inference.registry import manifest_json

    registry = _registry(data_dir)
    try:
        manifest = registry.verify(name, version) if verify else registry.show(name, version)
    except ServiceError as exc:
        _fail(as_json, exc)
    payload = manifest_json(manifest)
    payload["path"] = str(registry.path(name, manifest.version))
    if verify:
        payload["verified"] = True
    _emit(as_json, payload, json.dumps(payload, indent=2))


@app.command("register")
def register(
    manifest_file: Annotated[
        Path | None, typer.Option("--manifest", exists=True, dir_okay=False)
    ] = None,
    weights: Annotated[Path | None, typer.Option("--weights", exists=True, dir_okay=False)] = None,
    hf_dir: Annotated[
        Path | None,
        typer.Option(
            "--hf-dir",
            exists=True,
            file_okay=False,
            help="A Hugging Face causal-LM folder (config, safetensors weights, tokenizer, chat "
            "template): registered as a chat model. Every file is hashed; only safetensors "
            "load; pickles, remote code and untested architectures are refused.",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The chat model's name (with --hf-dir).")
    ] = None,
    asset: Annotated[
        list[str] | None,
        typer.Option("--asset", help="NAME=PATH of an extra file the model reads (repeatable)."),
    ] = None,
    curve: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    overwrite: bool = False,
    data_dir: DataDir = Path("data"),
    as_json: JsonFlag = False,
) -> None:
    """Register a model: a manifest and a safetensors or TorchScript file, or (--hf-dir) a
    Hugging Face causal-LM folder as a chat model."""
    from secure_aiaas.errors import InputError

    if hf_dir is not None:
        _register_chat_model(hf_dir, name, overwrite, data_dir, as_json)
        return
    if manifest_file is None or weights is None:
        _fail(as_json, InputError("give --manifest and --weights, or --hf-dir and --name"))
    try:
        try:
            raw = json.loads(manifest_file.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError("manifest: not valid JSON") from exc
        assets: dict[str, Path] = {}
        for entry in asset or []:
            target, sep, source = entry.partition("=")
            if not sep or not Path(source).is_file():
                raise InputError("--asset: expected NAME=PATH of an existing file")
            assets[target] = Path(source)
        name = raw.get("name") if isinstance(raw, dict) else None
        with admin_action("models.register", _model_object(name), tenant=None) as facts:
            manifest = _registry(data_dir).register(
                raw, weights, assets=assets, curve=curve, overwrite=overwrite
            )
            facts.update(
                model=manifest.name,
                model_version=manifest.version,
                weights_sha256=manifest.weights_sha256,
            )
    except ServiceError as exc:
        _fail(as_json, exc)
    _emit(
        as_json,
        {"registered": manifest.summary(), "weights_sha256": manifest.weights_sha256},
        f"registered {manifest.id} (sha256 {manifest.weights_sha256})",
    )


def _register_chat_model(
    directory: Path, name: str | None, overwrite: bool, data_dir: Path, as_json: bool
) -> None:
    from secure_aiaas.errors import InputError
    from secure_aiaas.llm import register_causal_lm

    if not name:
        _fail(as_json, InputError("--name is needed with --hf-dir"))
    try:
        with admin_action("models.register", _model_object(name), tenant=None) as facts:
            manifest = register_causal_lm(
                _registry(data_dir), directory, name=name, overwrite=overwrite
            )
            facts.update(
                model=manifest.name, model_version=manifest.version, task="text-generation"
            )
    except ServiceError as exc:
        _fail(as_json, exc)
    _emit(
        as_json,
        {"registered": manifest.summary()},
        f"registered chat model {manifest.id} ({len(manifest.assets)} files hashed)",
    )


@app.command("remove")
def remove(
    name: str,
    version: Annotated[str | None, typer.Option("--version", "-v", help="Default: all.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    data_dir: DataDir = Path("data"),
    as_json: JsonFlag = False,
) -> None:
    """Remove one version of a model, or all of them."""
    registry = _registry(data_dir)
    try:
        registry.resolve(name, version)  # NotFoundError before asking anything
        if not yes:
            what = f"{name} version {version}" if version else f"every version of {name}"
            typer.confirm(f"Remove {what}?", abort=True)
        with admin_action(
            "models.remove", _model_object(name), tenant=None, details={"model": name}
        ) as facts:
            removed = registry.remove(name, version)
            facts["versions"] = removed
    except ServiceError as exc:
        _fail(as_json, exc)
    _emit(
        as_json,
        {"removed": {"name": name, "versions": removed}},
        f"removed {name} versions {', '.join(removed)}",
    )


@app.command("train")
def train(
    name: Annotated[str, typer.Argument(help="digits-mlp | breast-cancer-lr | text-embed")],
    version: Annotated[str | None, typer.Option("--version", "-v", help="Default: next.")] = None,
    overwrite: bool = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    data_dir: DataDir = Path("data"),
    as_json: JsonFlag = False,
) -> None:
    """Train a built-in model (data ships with the packages; nothing is downloaded)."""
    from secure_aiaas.inference.registry import ModelRegistry
    from secure_aiaas.training import train as train_model

    try:
        manifest = train_model(
            name, data_dir, version=version, progress=progress, overwrite=overwrite
        )
    except ServiceError as exc:
        _fail(as_json, exc)
    directory = ModelRegistry(data_dir).path(manifest.name, manifest.version)
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in manifest.metrics.items())
    _emit(
        as_json,
        {"trained": manifest.summary(), "path": str(directory)},
        f"trained {manifest.id} -> {directory}\n{metrics}",
    )


@app.command("ensure")
def ensure(
    data_dir: DataDir = Path("data"),
    chat: Annotated[
        bool, typer.Option(help="Also the built-in chat model (converted once, ~40 s).")
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Prepare every built-in model not registered yet (first `make serve`): train the small
    ones, package the sentence encoder, convert the chat model — all offline."""
    from secure_aiaas.training import BUILTIN_MODELS, ensure_builtin_models

    try:
        made = ensure_builtin_models(data_dir, BUILTIN_MODELS, progress=not as_json)
        if chat:
            from secure_aiaas.llm import ensure_builtin_chat_model

            made += ensure_builtin_chat_model(data_dir)
    except ServiceError as exc:
        _fail(as_json, exc)
    _emit(
        as_json,
        {"trained": [m.id for m in made]},
        "prepared " + ", ".join(m.id for m in made)
        if made
        else "built-in models already registered",
    )
