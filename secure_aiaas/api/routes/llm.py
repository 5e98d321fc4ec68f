"""OpenAI-compatible chat and completions: `POST /v1/chat/completions`, `POST /v1/completions`.

The route owns the spine's steps and hands everything after them to `llm.service`:

    authorize  llm:<name> / generate  (sensitive tenants: only under a strict privacy profile)
    scrub      every message, as one conversation (one placeholder map)
    prepare    tokenize off the event loop (prompt tokens known)
    admit      tokens (prompt + max_tokens) and a stream slot within the tenant's limits
    generate   continuously batched; the answer's placeholders restored if the profile asks
    audit      counts only (tokens, entity types, finish reason, restored placeholders)

A streamed answer commits its *attempt* record before the first byte and its *outcome*
record before ``data: [DONE]``; a client that goes away mid-stream leaves an outcome with
status 499. Errors use OpenAI's shape on these routes (the `openai` client reads it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from secure_aiaas.api.bodies import BoundedRoute
from secure_aiaas.api.deps import Authorized, authorize_body
from secure_aiaas.errors import AuditError, AuthorizationError, ServiceError
from secure_aiaas.llm import ChatCompletionRequest, CompletionRequest
from secure_aiaas.llm.restore import PlaceholderMap
from secure_aiaas.llm.wire import SSE_DONE, SSE_MEDIA_TYPE, sse_error
from secure_aiaas.schemas import OpenAIErrorBody
from secure_aiaas.types import AuditFacts, Decision

router = APIRouter(
    tags=["OpenAI-compatible"],
    route_class=BoundedRoute,
    responses={
        status: {"model": OpenAIErrorBody, "description": text}
        for status, text in (
            (400, "Malformed request"),
            (401, "Missing or invalid API key"),
            (403, "Not allowed by policy"),
            (404, "Unknown model"),
            (413, "Body too large"),
            (422, "Invalid input"),
            (429, "Over a quota (Retry-After)"),
            (503, "Unavailable (Retry-After)"),
        )
    },
)
Generate = Annotated[Authorized, authorize_body("llm:{}", "model", "generate")]
_STREAM = {
    "200": {
        "description": "A completion; with `stream: true` server-sent events "
        "ending in `data: [DONE]`.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            SSE_MEDIA_TYPE: {"schema": {"type": "string"}},
        },
    }
}
# Recorded with a denial: why a sensitive tenant may not use a chat model here.
NOT_STRICT = ("llm", "sensitive tenants need a strict privacy profile")


@router.post("/v1/chat/completions", openapi_extra={"responses": _STREAM})
async def chat_completions(body: ChatCompletionRequest, auth: Generate) -> Any:
    """A chat completion (OpenAI's shape), streamed or not."""
    return await _generate(auth, body, body.message_texts(), chat=True)


@router.post("/v1/completions", openapi_extra={"responses": _STREAM})
async def completions(body: CompletionRequest, auth: Generate) -> Any:
    """A text completion (OpenAI's legacy shape), streamed or not."""
    return await _generate(auth, body, [body.prompt_text()], chat=False)


async def _generate(
    auth: Authorized,
    body: ChatCompletionRequest | CompletionRequest,
    texts: list[str],
    *,
    chat: bool,
) -> Any:
    pipeline, principal = auth.pipeline, auth.principal
    service, facts = pipeline.chat_model(body.model, auth.facts)
    profile = pipeline.privacy_profile(principal, body.model)
    facts = facts.detail(privacy_profile=profile.name)
    if principal.trust == "sensitive" and not profile.strict:
        denied = Decision(
            allowed=False,
            rule=NOT_STRICT,
            policy_version=facts.decision.policy_version if facts.decision else "-",
        )
        raise AuthorizationError().with_facts(facts.decided(facts.object or "", "generate", denied))
    convo, facts = await pipeline.scrub_conversation(principal, texts, facts, model=body.model)
    scrubbed = [r.text for r in convo.results]
    try:
        prompt = await asyncio.to_thread(
            service.prepare_chat if chat else service.prepare_completion,  # type: ignore[arg-type]
            body,
            scrubbed if chat else scrubbed[0],
        )
    except ServiceError as exc:
        exc.with_facts(facts)
        raise
    facts = facts.detail(
        llm={
            "prompt_tokens": prompt.prompt_tokens,
            "max_tokens": prompt.max_tokens,
            "stream": body.stream,
        }
    )
    grant = await pipeline.admit_tokens(principal, prompt.prompt_tokens + prompt.max_tokens, facts)
    restore = (
        PlaceholderMap(convo.placeholders)
        if profile.restore_answers and len(convo.placeholders)
        else None
    )
    try:
        generation = service.submit(prompt, restore=restore, priority=principal.limits.priority)
        await generation.admitted()  # a remote engine's refusal: 503 before any stream
    except ServiceError as exc:
        await grant.settle(0)
        exc.with_facts(facts)
        raise
    if not body.stream:
        try:
            answer = await generation.body()
        except ServiceError as exc:
            exc.with_facts(_finished(facts, generation))
            raise
        finally:
            await grant.settle(_used(generation))
        return auth.hand_back(_finished(facts, generation), answer)

    await auth.write_ahead(facts)  # durable before the first byte of the answer

    async def events() -> AsyncIterator[str]:
        final = facts
        try:
            async for event in generation.sse():
                if event == SSE_DONE:
                    final = _finished(facts, generation)
                    try:
                        await auth.record_outcome(final)  # before the stream says it is done
                    except AuditError as exc:
                        yield sse_error(exc, status=503)
                    yield event
                    return
                yield event
        finally:
            await grant.settle(_used(generation))
            # Read by the middleware if the stream ended before its outcome (a disconnect).
            auth.note(final if final is not facts else _finished(facts, generation))

    return auth.stream_back(facts, StreamingResponse(events(), media_type=SSE_MEDIA_TYPE))


def _used(generation: Any) -> int:
    outcome = generation.outcome
    if outcome is None:
        return int(generation.prompt_tokens)
    return int(outcome.prompt_tokens + outcome.completion_tokens)


def _finished(facts: AuditFacts, generation: Any) -> AuditFacts:
    """The facts of an ended generation: token counts, finish reason, restored placeholders
    (entity types and counts, never values)."""
    outcome = generation.outcome
    if outcome is None:
        return facts
    llm = dict(facts.details.get("llm", {}))  # type: ignore[call-overload]
    llm.update(
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        finish_reason=outcome.finish_reason,
        time_to_first_token_ms=(
            round(outcome.time_to_first_token_s * 1000, 1)
            if outcome.time_to_first_token_s is not None
            else None
        ),
    )
    if outcome.restored:
        llm["restored"] = dict(outcome.restored)
    return facts.detail(llm=llm)
