"""What Amazon Bedrock's Converse replies and ConverseStream events must look like for the
gateway to read them: checked before any translation, so a reply of another shape is the
provider's fault (a 502 saying what was wrong) and an error while translating a reply of this
shape is the gateway's own (a 500, logged with the request id).

Only what the gateway reads is checked; anything else may be there (``extra="allow"``). Field
names are Bedrock's own (camelCase). A stream event is the decoded frame as
``{"type": <:event-type>, **payload}`` (services/edge/providers/bedrock.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, TypeAdapter


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ToolUse(_Open):
    toolUseId: str
    name: str
    input: dict[str, Any] | None = None


class ReasoningText(_Open):
    text: str = ""
    signature: str | None = None


class Reasoning(_Open):
    reasoningText: ReasoningText | None = None
    redactedContent: str | None = None


class Block(_Open):
    text: str | None = None
    toolUse: ToolUse | None = None
    reasoningContent: Reasoning | None = None


class Message(_Open):
    role: str
    content: list[Block]


class Output(_Open):
    message: Message


class Usage(_Open):
    inputTokens: int = 0
    outputTokens: int = 0
    cacheReadInputTokens: int | None = None
    cacheWriteInputTokens: int | None = None


class Reply(_Open):
    output: Output
    stopReason: str
    usage: Usage


class ToolStart(_Open):
    toolUseId: str
    name: str


class Start(_Open):
    toolUse: ToolStart | None = None


class BlockStart(_Open):
    type: Literal["contentBlockStart"]
    contentBlockIndex: int
    start: Start


class ToolDelta(_Open):
    input: str = ""


class ReasoningDelta(_Open):
    text: str | None = None
    signature: str | None = None
    redactedContent: str | None = None


class Delta(_Open):
    text: str | None = None
    toolUse: ToolDelta | None = None
    reasoningContent: ReasoningDelta | None = None


class BlockDelta(_Open):
    type: Literal["contentBlockDelta"]
    contentBlockIndex: int
    delta: Delta


class BlockStop(_Open):
    type: Literal["contentBlockStop"]
    contentBlockIndex: int


class MessageStop(_Open):
    type: Literal["messageStop"]
    stopReason: str


class Metadata(_Open):
    type: Literal["metadata"]
    usage: Usage


class Exception_(_Open):
    type: Literal["exception"]
    exceptionType: str
    message: str = ""


class OtherEvent(_Open):
    type: str  # messageStart, and event types added later


_EVENTS = ("contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata", "exception")


def _kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else None
    return kind if kind in _EVENTS else "other"


Event = Annotated[
    Annotated[BlockStart, Tag("contentBlockStart")]
    | Annotated[BlockDelta, Tag("contentBlockDelta")]
    | Annotated[BlockStop, Tag("contentBlockStop")]
    | Annotated[MessageStop, Tag("messageStop")]
    | Annotated[Metadata, Tag("metadata")]
    | Annotated[Exception_, Tag("exception")]
    | Annotated[OtherEvent, Tag("other")],
    Discriminator(_kind),
]

REPLY: TypeAdapter[Reply] = TypeAdapter(Reply)
EVENT: TypeAdapter[Any] = TypeAdapter(Event)
