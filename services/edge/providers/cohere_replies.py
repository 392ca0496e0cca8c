"""What Cohere's Chat API v2 replies and stream events must look like for the gateway to read
them: checked before any translation, so a reply of another shape is the provider's fault (a
502 saying what was wrong) and an error while translating a reply of this shape is the
gateway's own (a 500, logged with the request id).

Only what the gateway reads is checked; anything else may be there (``extra="allow"``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, TypeAdapter


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Function(_Open):
    name: str
    arguments: str | None = None


class ToolCall(_Open):
    id: str
    function: Function


class Text(_Open):
    type: Literal["text"]
    text: str


class Thinking(_Open):
    type: Literal["thinking"]
    thinking: str


class OtherContent(_Open):
    type: str


def _content_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else None
    return kind if kind in ("text", "thinking") else "other"


Content = Annotated[
    Annotated[Text, Tag("text")] | Annotated[Thinking, Tag("thinking")] | Annotated[OtherContent, Tag("other")],
    Discriminator(_content_kind),
]


class Message(_Open):
    content: list[Content] | None = None
    tool_plan: str | None = None
    tool_calls: list[ToolCall] | None = None


class Tokens(_Open):
    input_tokens: Any = None  # a number; anything else counts as 0
    output_tokens: Any = None


class Usage(_Open):
    tokens: Tokens | None = None
    billed_units: Tokens | None = None
    cached_tokens: Any = None


class Reply(_Open):
    id: str
    finish_reason: str
    message: Message
    usage: Usage | None = None


class DeltaContent(_Open):
    text: str | None = None
    thinking: str | None = None


class ContentMessage(_Open):
    content: DeltaContent | None = None


class ContentDeltaBody(_Open):
    message: ContentMessage | None = None


class ContentDelta(_Open):
    type: Literal["content-delta"]
    delta: ContentDeltaBody | None = None


class PlanMessage(_Open):
    tool_plan: str | None = None


class PlanBody(_Open):
    message: PlanMessage | None = None


class ToolPlanDelta(_Open):
    type: Literal["tool-plan-delta"]
    delta: PlanBody | None = None


class StartFunction(_Open):
    name: str | None = None
    arguments: str | None = None


class StartCall(_Open):
    id: str
    function: StartFunction | None = None


class StartMessage(_Open):
    tool_calls: StartCall


class StartDelta(_Open):
    message: StartMessage


class ToolCallStart(_Open):
    type: Literal["tool-call-start"]
    index: int | None = None
    delta: StartDelta


class DeltaFunction(_Open):
    arguments: str | None = None


class DeltaCall(_Open):
    function: DeltaFunction | None = None


class CallMessage(_Open):
    tool_calls: DeltaCall | None = None


class CallBody(_Open):
    message: CallMessage | None = None


class ToolCallDelta(_Open):
    type: Literal["tool-call-delta"]
    index: int | None = None
    delta: CallBody | None = None


class EndDelta(_Open):
    finish_reason: str | None = None
    error: str | None = None
    usage: Usage | None = None


class MessageEnd(_Open):
    type: Literal["message-end"]
    delta: EndDelta | None = None


class MessageStart(_Open):
    type: Literal["message-start"]
    id: str | None = None


class OtherEvent(_Open):
    type: str  # content-start/-end, tool-call-end, citations...: not read


_KINDS = ("content-delta", "tool-plan-delta", "tool-call-start", "tool-call-delta", "message-end", "message-start")


def _kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else None
    return kind if kind in _KINDS else "other"


Event = Annotated[
    Annotated[ContentDelta, Tag("content-delta")]
    | Annotated[ToolPlanDelta, Tag("tool-plan-delta")]
    | Annotated[ToolCallStart, Tag("tool-call-start")]
    | Annotated[ToolCallDelta, Tag("tool-call-delta")]
    | Annotated[MessageEnd, Tag("message-end")]
    | Annotated[MessageStart, Tag("message-start")]
    | Annotated[OtherEvent, Tag("other")],
    Discriminator(_kind),
]

REPLY: TypeAdapter[Reply] = TypeAdapter(Reply)
EVENT: TypeAdapter[Any] = TypeAdapter(Event)
