"""`secure-aiaas client predict`: the SDK from the command line (a tenant's machine).

Plaintext by default; ``--encrypted`` keeps the data encrypted end to end (CKKS): the input
file is encrypted here, the server evaluates ciphertexts, the result is decrypted here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from secure_aiaas.errors import ServiceError

app = typer.Typer(help="Call the service as a tenant (uses the SDK).", no_args_is_help=True)


@app.command("predict")
def predict(
    input_file: Annotated[
        Path, typer.Argument(help=".npy file: one sample per row", exists=True, dir_okay=False)
    ],
    model: Annotated[str, typer.Option("--model", "-m")],
    encrypted: Annotated[bool, typer.Option("--encrypted", help="CKKS end to end")] = False,
    url: Annotated[str, typer.Option(envvar="SAIAAS_URL")] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str, typer.Option(envvar="SAIAAS_API_KEY", help="(env SAIAAS_API_KEY)", show_default=False)
    ] = "",
    key_dir: Annotated[
        Path | None,
        typer.Option(help="keep the secret context here, encrypted (with SAIAAS_HE_PASSPHRASE)"),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help=".npy for the result")
    ] = None,
) -> None:
    """Predict for every row of INPUT_FILE; prints one JSON object (or writes --output)."""
    # Here, not at the top: every other command of the CLI would import numpy (~0.1 s).
    import numpy as np

    from secure_aiaas.sdk import Client, EncryptedClient

    if not api_key:
        typer.echo("error: set SAIAAS_API_KEY (never pass keys in URLs)", err=True)
        raise typer.Exit(2)
    x = np.load(input_file, allow_pickle=False)
    if x.ndim == 1:
        x = x[None, :]
    try:
        if encrypted:
            passphrase = os.environ.get("SAIAAS_HE_PASSPHRASE") if key_dir else None
            with EncryptedClient(url, api_key, key_dir=key_dir, passphrase=passphrase) as he:
                result = he.predict(model, x)
        else:
            with Client(url, api_key) as client:
                result = client.infer(model, x.astype(np.float32))
    except ServiceError as exc:
        request_id = vars(exc).get("request_id")  # set by the SDK on errors the service sent
        suffix = f" (request id {request_id})" if request_id else ""
        typer.echo(f"error: {exc.public_message}{suffix}", err=True)
        raise typer.Exit(1) from exc
    if output is not None:
        np.save(output, result)
    typer.echo(
        json.dumps(
            {
                "model": model,
                "encrypted": encrypted,
                "shape": list(result.shape),
                **({} if output else {"outputs": result.tolist()}),
            }
        )
    )
