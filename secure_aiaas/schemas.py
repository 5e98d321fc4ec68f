"""Wire models shared by the HTTP layer (`api/`) and the SDK: every request body the service
accepts, the responses it sends and its one error shape.

Request models refuse unknown fields (``extra="forbid"``) and carry their bounds, so a
malformed or oversized body is refused with 422 naming the field before any work starts,
and the OpenAPI document (``GET /openapi.json``) describes exactly what is accepted.
Bounds that operators tune (characters per text, texts per request, …) are checked against
`config.LimitsSettings` too; the static maxima here are the hard ceilings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, model_validator

from secure_aiaas.names import MODEL_PATTERN, TENANT_PATTERN

# Hard ceilings (settings may only lower them).
MAX_TEXTS = 2048
MAX_TEXT_CHARS = 100_000
MAX_TENSOR_INPUTS = 16
MAX_ID_CHARS = 128


class Strict(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class Loose(BaseModel):
    """A response body (clients may get more fields in later versions)."""

    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------- errors
class ErrorBody(Loose):
    """Every error: a public message, a stable code and the request id (KServe's ``error``)."""

    error: str
    code: str
    request_id: str | None = None


class OpenAIErrorDetail(Loose):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class OpenAIErrorBody(Loose):
    """OpenAI's error shape, as the chat and completion routes send it (the openai client
    reads it)."""

    error: OpenAIErrorDetail
    request_id: str | None = None


# --------------------------------------------------------------------------- identity
class WhoAmI(Loose):
    tenant: str
    trust: Literal["trusted", "sensitive"]
    subject: str
    roles: list[str]
    key_id: str
    operator: bool


# --------------------------------------------------------------------------- KServe v2
V2Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
Scalar = bool | int | float | str


class V2TensorParameters(Strict):
    binary_data_size: Annotated[int, Field(ge=0)] | None = None


class V2InputTensor(Strict):
    """One input: ``data`` flat or nested, or ``parameters.binary_data_size`` bytes of the
    binary tensor extension (after the JSON header)."""

    name: Annotated[str, Field(min_length=1, max_length=128)]
    shape: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=8)]
    datatype: V2Datatype
    parameters: V2TensorParameters | None = None
    # Documented element by element but not validated that way: the route's parser checks
    # the values against the model's datatype at C speed (numpy); pydantic's per-element
    # union check cost 1.4 ms for 4,096 values.
    data: SkipValidation[list[Scalar | list[Any]]] | None = None


class V2OutputParameters(Strict):
    binary_data: bool | None = None


class V2RequestedOutput(Strict):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    parameters: V2OutputParameters | None = None


class V2RequestParameters(Strict):
    binary_data_output: bool | None = None


class V2InferRequest(Strict):
    """``POST /v2/models/{name}/infer`` (JSON, or JSON + binary tensors)."""

    id: Annotated[str, Field(max_length=MAX_ID_CHARS)] | None = None
    parameters: V2RequestParameters | None = None
    inputs: Annotated[list[V2InputTensor], Field(min_length=1, max_length=MAX_TENSOR_INPUTS)]
    outputs: Annotated[list[V2RequestedOutput], Field(max_length=MAX_TENSOR_INPUTS)] | None = None


class V2OutputTensor(Loose):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class V2InferResponse(Loose):
    model_name: str
    model_version: str
    outputs: list[V2OutputTensor]
    id: str | None = None


class V2TensorSpec(Loose):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(Loose):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorSpec]
    outputs: list[V2TensorSpec]


class V2ModelReady(Loose):
    name: str
    version: str
    ready: bool


class V2ServerMetadata(Loose):
    name: str
    version: str
    extensions: list[str]


# --------------------------------------------------------------------------- OpenAI-compatible
ModelName = Annotated[str, Field(pattern=MODEL_PATTERN, max_length=64)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]


class EmbeddingsRequest(Strict):
    """``POST /v1/embeddings`` (OpenAI's shape; the official client sends base64 by default)."""

    model: ModelName
    input: Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_TEXTS)]
    encoding_format: Literal["float", "base64"] = "float"
    # Accepted for compatibility with OpenAI clients; never stored or logged.
    user: Annotated[str, Field(max_length=256)] | None = None

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Embedding(Loose):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(Loose):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(Loose):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ModelCard(Loose):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(Loose):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# --------------------------------------------------------------------------- chat completions
# ``POST /v1/chat/completions`` and ``/v1/completions``: the routes validate with these very
# classes (`secure_aiaas.llm.wire` re-exports them); the SDK builds its bodies from them.
# Strict JSON types, so ``"0.5"`` is not a temperature; OpenAI features not served are refused.
MAX_CHAT_MESSAGES = 256
MAX_CONTENT_CHARS = 100_000
MAX_CONTENT_PARTS = 64
MAX_STOP = 4
MAX_STOP_CHARS = 64


class StrictJSON(BaseModel):
    """A request body with strict JSON types (no coercion), immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TextPart(StrictJSON):
    """One content part; only text is served (no images or audio)."""

    type: Literal["text"]
    text: Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]


class ChatMessage(StrictJSON):
    role: Literal["system", "developer", "user", "assistant"]
    content: (
        Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]
        | Annotated[list[TextPart], Field(min_length=1, max_length=MAX_CONTENT_PARTS)]
    )

    def text(self) -> str:
        """The content as one string (text parts joined without a separator, as OpenAI does)."""
        return (
            self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        )


class StreamOptions(StrictJSON):
    include_usage: bool = False


Stop = (
    Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
    | Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]],
        Field(max_length=MAX_STOP),
    ]
)


class Sampling(StrictJSON):
    """The parameters the chat and completion endpoints share."""

    model: Annotated[str, Field(pattern=MODEL_PATTERN)]
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    seed: Annotated[int, Field(ge=-(2**63), lt=2**63)] | None = None
    stop: Stop | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    user: Annotated[str, Field(max_length=256)] | None = None  # accepted, ignored

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> Sampling:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options: only allowed when stream is true")
        return self

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(Sampling):
    """``POST /v1/chat/completions``."""

    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=MAX_CHAT_MESSAGES)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: Literal[False] | None = None

    @model_validator(mode="after")
    def _one_limit(self) -> ChatCompletionRequest:
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("max_tokens: give max_tokens or max_completion_tokens, not both")
        return self

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_tokens is None else self.max_tokens

    def message_texts(self) -> list[str]:
        """Every message's text, in order: what the caller scrubs (as one batch)."""
        return [m.text() for m in self.messages]


class CompletionRequest(Sampling):
    """``POST /v1/completions`` (one prompt; OpenAI's default of 16 tokens)."""

    prompt: (
        Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]
        | Annotated[
            list[Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]],
            Field(min_length=1, max_length=1),
        ]
    )
    max_tokens: Annotated[int, Field(ge=1)] | None = 16
    echo: Literal[False] = False
    logprobs: None = None
    best_of: Annotated[int, Field(ge=1, le=1)] | None = None
    suffix: None = None

    def prompt_text(self) -> str:
        """The prompt: what the caller scrubs."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class CompletionUsage(Loose):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionMessage(Loose):
    role: str
    content: str | None = None


class ChatCompletionChoice(Loose):
    index: int
    message: ChatCompletionMessage
    finish_reason: str | None = None


class ChatCompletionResponse(Loose):
    """``POST /v1/chat/completions`` without ``stream``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: Annotated[list[ChatCompletionChoice], Field(min_length=1)]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None

    @property
    def text(self) -> str:
        """The (first) choice's text."""
        return self.choices[0].message.content or ""

    @property
    def finish_reason(self) -> str | None:
        """``"stop"`` (end of answer or a stop sequence) or ``"length"`` (token limit)."""
        return self.choices[0].finish_reason


class ChatDelta(Loose):
    role: str | None = None
    content: str | None = None


class ChatChunkChoice(Loose):
    index: int
    delta: ChatDelta
    finish_reason: str | None = None


class ChatCompletionChunk(Loose):
    """One ``data:`` event of a streamed chat completion (the last may carry only usage)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


# --------------------------------------------------------------------------- privacy
JsonValue = dict[str, Any] | list[Any] | str | int | float | bool | None


class ScrubRequest(Strict):
    """``POST /v1/privacy/scrub``: exactly one of ``text``, ``texts`` (one request: the same
    value gets the same placeholder in every text) or ``json`` (scrubbed field by field,
    keys and numbers included)."""

    text: Text | None = None
    texts: Annotated[list[Text], Field(min_length=1, max_length=MAX_TEXTS)] | None = None
    json_value: JsonValue = Field(default=None, alias="json")
    model: ModelName | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _exactly_one(self) -> ScrubRequest:
        given = [
            self.text is not None,
            self.texts is not None,
            "json_value" in self.model_fields_set,
        ]
        if sum(given) != 1:
            raise ValueError("give exactly one of 'text', 'texts' or 'json'")
        return self


class ScrubEntity(Loose):
    type: str
    start: int
    end: int
    score: float


class ScrubbedText(Loose):
    text: str
    entities: list[ScrubEntity]


class ScrubResponse(Loose):
    """Scrubbed texts (or JSON) and entity counts by type — never the values found."""

    results: list[ScrubbedText] | None = None
    json_value: JsonValue = Field(default=None, alias="json")
    entity_counts: dict[str, int]

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class RestoreKey(Loose):
    tenant: str
    algorithm: str
    key: str


# --------------------------------------------------------------------------- audit
Timestamp = Annotated[str, Field(max_length=40)]


class ExportRequest(Strict):
    """``POST /v1/audit/exports``: a time range (``since`` inclusive, ``until`` exclusive)."""

    since: Timestamp | None = None
    until: Timestamp | None = None
    tenant: Annotated[str, Field(pattern=TENANT_PATTERN)] | None = None
    format: Literal["jsonl", "csv"] = "jsonl"


class AuditEventsPage(Loose):
    tenant: str | None
    records: list[dict[str, Any]]
    next_cursor: str | None


class PublicKeyEntry(Loose):
    key_id: str
    current: bool
    pem: str


class PublicKeys(Loose):
    algorithm: str
    current_key_id: str
    keys: list[PublicKeyEntry]
    pem_bundle: str


# --------------------------------------------------------------------------- encrypted inference
class ContextCreated(Loose):
    context_id: str
    model: str
    expires_in_s: float


# The binary request bodies of /v1/he/ (TenSEAL frames), described for OpenAPI.
HE_CONTENT_TYPE = "application/vnd.saiaas.he+octet-stream"


def binary_body(description: str, media_type: str = HE_CONTENT_TYPE) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is bytes the route reads itself."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
        }
    }


# --------------------------------------------------------------------------- admin
class PolicyRule(Loose):
    type: str
    fields: list[str]
    source: str


class PolicyView(Loose):
    version: str
    files: list[str]
    rules: list[PolicyRule]
    last_error: str | None
