"""`secure-aiaas privacy ...`: scrub text from stdin, check profiles, run the evaluation."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="PII scrubbing: scrub text, check profiles, measure quality.", no_args_is_help=True
)

PolicyOpt = Annotated[Path, typer.Option("--policy", help="privacy profile file")]


@app.command()
def scrub(
    policy: PolicyOpt = Path("policies/privacy.yaml"),
    tenant: Annotated[str, typer.Option(help="tenant whose profile applies")] = "*",
    model: Annotated[str | None, typer.Option(help="model whose profile applies")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="stdin is a JSON value: scrub field by field")
    ] = False,
    spacy_model: Annotated[str | None, typer.Option(help="installed spaCy package")] = None,
) -> None:
    """Scrub stdin and print the result as JSON (entities: type, offsets, score; never values)."""
    from secure_aiaas.privacy import ProfileStore, Scrubber

    scrubber = Scrubber.build(ProfileStore(policy), model_name=spacy_model)
    data = sys.stdin.read()
    if as_json:
        res = scrubber.scrub_json(json.loads(data), tenant=tenant, model=model)
        typer.echo(
            json.dumps({"value": res.value, "entity_counts": res.counts}, ensure_ascii=False)
        )
    else:
        typer.echo(
            json.dumps(
                scrubber.scrub_text(data, tenant=tenant, model=model).to_dict(), ensure_ascii=False
            )
        )


@app.command()
def check(policy: PolicyOpt = Path("policies/privacy.yaml")) -> None:
    """Validate a profile file; print ``file:line: reason`` per problem, exit 1 if any."""
    from secure_aiaas.privacy import validate_privacy_file

    errors = validate_privacy_file(policy)
    for line in errors:
        typer.echo(line, err=True)
    if errors:
        raise typer.Exit(1)
    typer.echo(f"{policy}: ok")


@app.command("eval")
def evaluate_cmd(
    split: Annotated[str, typer.Option(help="tune | heldout | both")] = "both",
    baseline: Annotated[bool, typer.Option(help="also run Presidio's default pipeline")] = False,
    policy: PolicyOpt = Path("policies/privacy.yaml"),
    workers: Annotated[int, typer.Option(help="detection processes")] = 1,
) -> None:
    """Per-entity recall and PII-free texts changed on the generated evaluation set."""
    from secure_aiaas.privacy import Scrubber, load_policy
    from secure_aiaas.privacy.evaluation.generated_v1 import generate
    from secure_aiaas.privacy.evaluation.metrics import evaluate, ours

    scrubber = Scrubber.build(load_policy(policy), workers=workers)
    splits = ["tune", "heldout"] if split == "both" else [split]
    try:
        for name in splits:
            samples = generate(name)  # type: ignore[arg-type]
            typer.echo(json.dumps(evaluate("ours", name, samples, ours(scrubber)).summary()))
            if baseline:
                from secure_aiaas.privacy.evaluation.presidio_baseline import presidio_default_scrub

                typer.echo(
                    json.dumps(
                        evaluate(
                            "presidio-default", name, samples, presidio_default_scrub()
                        ).summary()
                    )
                )
    finally:
        scrubber.close()
