"""What Anthropic's Messages API replies and stream events must look like for the gateway to
read them: checked before any translation, so a reply of another shape is the provider's
fault (a 502 saying what was wrong) and an error while translating a reply of this shape is
the gateway's own (a 500, logged with the request id).

Only what the gateway reads is checked; anything else may be there (``extra="allow"``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, TypeAdapter


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Usage(_Open):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    output_tokens_details: dict[str, Any] | None = None


class Text(_Open):
    type: Literal["text"]
    text: str


class Thinking(_Open):
    type: Literal["thinking"]
    thinking: str = ""
    signature: str = ""


class RedactedThinking(_Open):
    type: Literal["redacted_thinking"]
    data: str


class ToolUse(_Open):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class OtherBlock(_Open):
    type: str  # server tools' blocks and those added later: passed over


_KNOWN = ("text", "thinking", "redacted_thinking", "tool_use")


def _kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in _KNOWN else "other"


Block = Annotated[
    Annotated[Text, Tag("text")]
    | Annotated[Thinking, Tag("thinking")]
    | Annotated[RedactedThinking, Tag("redacted_thinking")]
    | Annotated[ToolUse, Tag("tool_use")]
    | Annotated[OtherBlock, Tag("other")],
    Discriminator(_kind),
]


class Message(_Open):
    id: str | None = None
    content: list[Block]
    stop_reason: str | None = None
    usage: Usage


class StartedMessage(_Open):
    id: str | None = None
    usage: Usage | None = None


class MessageStart(_Open):
    type: Literal["message_start"]
    message: StartedMessage


class BlockStart(_Open):
    type: Literal["content_block_start"]
    index: int
    content_block: Block


class Delta(_Open):
    type: str
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    partial_json: str | None = None


class BlockDelta(_Open):
    type: Literal["content_block_delta"]
    index: int
    delta: Delta


class BlockStop(_Open):
    type: Literal["content_block_stop"]
    index: int


class MessageDelta(_Open):
    type: Literal["message_delta"]
    delta: dict[str, Any] = {}
    usage: dict[str, Any] = {}


class ErrorBody(_Open):
    type: str = "api_error"
    message: str = ""


class ErrorEvent(_Open):
    type: Literal["error"]
    error: ErrorBody


class OtherEvent(_Open):
    type: str  # message_stop, ping, and event types added later


_EVENTS = (
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "error",
)


def _event_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else None
    return kind if kind in _EVENTS else "other"


Event = Annotated[
    Annotated[MessageStart, Tag("message_start")]
    | Annotated[BlockStart, Tag("content_block_start")]
    | Annotated[BlockDelta, Tag("content_block_delta")]
    | Annotated[BlockStop, Tag("content_block_stop")]
    | Annotated[MessageDelta, Tag("message_delta")]
    | Annotated[ErrorEvent, Tag("error")]
    | Annotated[OtherEvent, Tag("other")],
    Discriminator(_event_kind),
]

REPLY: TypeAdapter[Message] = TypeAdapter(Message)
EVENT: TypeAdapter[Any] = TypeAdapter(Event)
