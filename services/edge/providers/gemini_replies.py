"""What Gemini's ``generateContent`` replies, stream chunks and embeddings must look like for
the gateway to read them: checked before any translation, so a reply of another shape is the
provider's fault (a 502 saying what was wrong) and an error while translating a reply of this
shape is the gateway's own (a 500, logged with the request id).

Only what the gateway reads is checked; anything else may be there (``extra="allow"``). Field
names are Gemini's own (camelCase).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class FunctionCall(_Open):
    name: str
    id: str | None = None
    args: dict[str, Any] | None = None


class Part(_Open):
    text: str | None = None
    thought: bool | None = None
    thoughtSignature: str | None = None
    functionCall: FunctionCall | None = None


class Content(_Open):
    parts: list[Part] | None = None
    role: str | None = None


class LogprobCandidate(_Open):
    token: str | None = None
    logProbability: float | None = None


class Candidate(_Open):
    content: Content | None = None
    finishReason: str | None = None
    index: int | None = None
    logprobsResult: dict[str, Any] | None = None


class Reply(_Open):
    candidates: list[Candidate] | None = None
    usageMetadata: dict[str, Any] | None = None
    promptFeedback: dict[str, Any] | None = None
    responseId: str | None = None
    error: dict[str, Any] | None = None  # a stream's error event


class Embedding(_Open):
    values: list[float]


class EmbedReply(_Open):
    embedding: Embedding


class BatchEmbedReply(_Open):
    embeddings: list[Embedding]


REPLY: TypeAdapter[Reply] = TypeAdapter(Reply)
EMBED: TypeAdapter[EmbedReply] = TypeAdapter(EmbedReply)
BATCH_EMBED: TypeAdapter[BatchEmbedReply] = TypeAdapter(BatchEmbedReply)
