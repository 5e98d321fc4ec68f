"""KServe v2 parsing: clear messages naming the field; replies in the v2 shape."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from secure_aiaas.errors import InputError
from secure_aiaas.inference import (
    Manifest,
    ModelRegistry,
    build_infer_response,
    coerce_texts,
    decode_infer_body,
    encode_infer_response,
    model_metadata,
    parse_infer_request,
)


@pytest.fixture(scope="module")
def digits_manifest(registry: ModelRegistry) -> Manifest:
    return registry.show("digits-mlp")


def _body(**changes: Any) -> dict[str, Any]:
    tensor = {"name": "input", "shape": [2, 64], "datatype": "FP32", "data": list(range(128))}
    tensor.update(changes)
    return {"inputs": [tensor]}


def test_valid_request_parses_to_float32_rows(digits_manifest: Manifest) -> None:
    request = parse_infer_request(
        {**_body(), "id": "r1", "outputs": [{"name": "label"}]}, digits_manifest
    )
    array = request.single
    assert array.dtype == np.float32 and array.shape == (2, 64)
    assert array[1, 0] == 64.0
    assert request.rows == 2 and request.request_id == "r1"
    assert request.requested_outputs == ["label"]


def test_nested_data_is_accepted(digits_manifest: Manifest) -> None:
    nested = [list(range(64)), list(range(64, 128))]
    assert parse_infer_request(_body(data=nested), digits_manifest).single.shape == (2, 64)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body: expected a JSON object"),
        ({}, "inputs: expected a non-empty list"),
        ({"inputs": ["x"]}, "inputs[0]: expected an object"),
        (_body(name="pixels"), "inputs[0].name: expected one of ['input']"),
        (_body(datatype="INT64"), "inputs[0].datatype: expected FP32"),
        (_body(shape=[3]), "inputs[0].shape: expected [-1, 64], got [3]"),
        (_body(shape=[2, 63]), "inputs[0].shape: expected [-1, 64], got [2, 63]"),
        (_body(shape="2x64"), "inputs[0].shape: expected a list of integers"),
        (_body(shape=[0, 64]), "inputs[0].shape: dims must be positive"),
        (_body(shape=[100, 64]), "inputs[0].shape: batch size 100 exceeds the maximum 64"),
        (_body(data=list(range(127))), "inputs[0].data: expected 128 values for shape [2, 64], got 127"),
        (_body(data=["1"] * 128), "inputs[0].data: expected numbers for datatype FP32"),
        (_body(data=[True] * 128), "inputs[0].data: expected numbers for datatype FP32"),
        (_body(data=[None] * 128), "inputs[0].data: expected numbers for datatype FP32"),
        (_body(data=[1e300] * 128), "inputs[0].data: values must be finite"),
        (_body(data=[[1, 2], [3]]), "inputs[0].data: expected a flat or regularly nested list"),
        (_body(data="abc"), "inputs[0].data: expected a list of numbers"),
        # The route's schema model does not look inside `data` (the parser is its check):
        (_body(data={"a": 1}), "inputs[0].data: expected a list of numbers"),
        (_body(data=[{"a": 1}] * 128), "inputs[0].data: expected numbers for datatype FP32"),
        (_body(data=[[{"a": 1}] * 64] * 2), "inputs[0].data: expected numbers for datatype FP32"),
        ({"inputs": [_body()["inputs"][0]] * 2}, "inputs[1].name: input 'input' given twice"),
        ({**_body(), "outputs": [{"name": "secret"}]}, "outputs[0].name: expected one of"),
        ({**_body(), "id": 5}, "id: expected a string"),
    ],
)  # fmt: skip
def test_invalid_requests_name_the_field(
    digits_manifest: Manifest, body: object, message: str
) -> None:
    with pytest.raises(InputError) as caught:
        parse_infer_request(body, digits_manifest, max_batch=64)
    assert caught.value.public_message.startswith(message)
    assert caught.value.code == "invalid_input"


def test_messages_do_not_echo_user_data(digits_manifest: Manifest) -> None:
    with pytest.raises(InputError) as caught:
        parse_infer_request(_body(name="my-secret-name-4111111111111111"), digits_manifest)
    assert "4111" not in caught.value.public_message


def test_text_inputs(registry: ModelRegistry) -> None:
    manifest = registry.show("text-embed")
    body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]}
    assert parse_infer_request(body, manifest).single == ["a", "b"]
    bad = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", 3]}]}
    with pytest.raises(InputError, match=r"^inputs\[0\]\.data\[1\]: expected a string"):
        parse_infer_request(bad, manifest)
    short = {"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a", "b"]}]}
    with pytest.raises(InputError, match=r"expected 3 values for shape \[3\], got 2"):
        parse_infer_request(short, manifest)


def test_coerce_texts_openai_style() -> None:
    assert coerce_texts("hello") == ["hello"]
    assert coerce_texts(["a", "b"]) == ["a", "b"]
    for value, message in ((5, "input: expected a string or a non-empty list of strings"),
                           ([], "input: expected"), (["ok", ""], "input[1]: must not be empty"),
                           (["x" * 20_000], "input[0]: at most")):  # fmt: skip
        with pytest.raises(InputError) as caught:
            coerce_texts(value)
        assert caught.value.public_message.startswith(message)


def test_response_and_metadata(digits_manifest: Manifest) -> None:
    outputs = {
        "logits": np.ones((2, 10), dtype=np.float32),
        "probabilities": np.full((2, 10), 0.1, dtype=np.float32),
        "label": np.array([3, 7]),
    }
    reply = build_infer_response(digits_manifest, outputs, request_id="r1")
    assert reply["model_name"] == "digits-mlp" and reply["model_version"] == "1"
    assert reply["id"] == "r1"
    label = next(o for o in reply["outputs"] if o["name"] == "label")
    assert label == {"name": "label", "datatype": "INT64", "shape": [2], "data": [3, 7]}
    only = build_infer_response(digits_manifest, outputs, requested_outputs=["logits"])
    assert [o["name"] for o in only["outputs"]] == ["logits"]
    assert len(only["outputs"][0]["data"]) == 20
    meta = model_metadata(digits_manifest)
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert meta["versions"] == ["1"] and meta["platform"] == "pytorch"


def test_tritonclient_binary_round_trip(registry: ModelRegistry, digits) -> None:  # type: ignore[no-untyped-def]
    """Bodies built and parsed by tritonclient itself (binary tensor extension, its default)."""
    http = pytest.importorskip("tritonclient.http")
    manifest = registry.show("digits-mlp")
    x = np.random.default_rng(3).integers(0, 17, size=(3, 64)).astype(np.float32)
    tensor = http.InferInput("input", [3, 64], "FP32")
    tensor.set_data_from_numpy(x)  # binary_data=True by default
    wanted = [
        http.InferRequestedOutput("label"),
        http.InferRequestedOutput("logits", binary_data=False),
    ]
    raw, json_size = http.InferenceServerClient.generate_request_body(
        [tensor], wanted, request_id="q1"
    )

    body, tail = decode_infer_body(raw, str(json_size))
    request = parse_infer_request(body, manifest, binary=tail)
    np.testing.assert_array_equal(request.single, x)
    assert request.binary_outputs == {"label"} and request.request_id == "q1"

    outputs = digits.predict(request.single)
    content, header_length = encode_infer_response(manifest, outputs, request)
    assert header_length is not None
    result = http.InferenceServerClient.parse_response_body(content, header_length=header_length)
    np.testing.assert_array_equal(result.as_numpy("label"), outputs["label"])
    np.testing.assert_allclose(result.as_numpy("logits"), outputs["logits"], rtol=1e-6)
    assert result.get_response()["model_name"] == "digits-mlp"


def test_tritonclient_binary_text(registry: ModelRegistry) -> None:
    http = pytest.importorskip("tritonclient.http")
    tensor = http.InferInput("text", [2], "BYTES")
    tensor.set_data_from_numpy(np.array(["héllo".encode(), b"world"], dtype=object))
    raw, json_size = http.InferenceServerClient.generate_request_body([tensor])
    body, tail = decode_infer_body(raw, json_size)
    assert parse_infer_request(body, registry.show("text-embed"), binary=tail).single == [
        "héllo",
        "world",
    ]


@pytest.mark.parametrize(
    ("binary", "size", "message"),
    [
        (b"\0" * 10, 10, "inputs[0].parameters.binary_data_size: expected 256 bytes"),
        (b"\0" * 256, 300, "inputs[0].parameters.binary_data_size: beyond the binary data"),
        (b"\0" * 260, 256, "body: binary data longer than"),
        (b"\0" * 256, -1, "inputs[0].parameters.binary_data_size: expected an integer"),
    ],
)
def test_binary_errors_name_the_field(
    digits_manifest: Manifest, binary: bytes, size: int, message: str
) -> None:
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                        "parameters": {"binary_data_size": size}}]}  # fmt: skip
    with pytest.raises(InputError) as caught:
        parse_infer_request(body, digits_manifest, binary=binary)
    assert caught.value.public_message.startswith(message)


def test_decode_infer_body_errors() -> None:
    assert decode_infer_body(b'{"a": 1}') == ({"a": 1}, b"")
    for raw, length, message in ((b"{", None, "body: not valid JSON"),
                                 (b"{}", "x", "Inference-Header-Content-Length: expected"),
                                 (b"{}", 9, "Inference-Header-Content-Length: outside")):  # fmt: skip
        with pytest.raises(InputError, match=message):
            decode_infer_body(raw, length)


def test_json_reply_when_nothing_binary(digits_manifest: Manifest, digits) -> None:  # type: ignore[no-untyped-def]
    request = parse_infer_request(_body(), digits_manifest)
    content, header_length = encode_infer_response(
        digits_manifest, digits.predict(request.single), request
    )
    assert header_length is None
    assert content.startswith(b'{"model_name":"digits-mlp"')
