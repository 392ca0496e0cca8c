"""The gateway's typed model of a conversation, between the APIs clients speak and the ones
providers speak.

A request is read once into a :class:`Conversation` (services/edge/canonical/chat.py reads
OpenAI's chat completions; the Responses and Messages APIs are translated to chat first), and
a translating adapter writes its provider's wire format from it. Everything here has been
checked: data URIs decode, tool-call arguments are JSON objects, a named ``tool_choice``
names an offered tool. What a provider cannot carry is the adapter's to refuse (a 400 naming
it, or dropped on request), since that depends on the provider.

The OpenAI pass-through never builds one: its requests stay bytes (docs/performance.md).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Effort = Literal["none", "minimal", "low", "medium", "high"]
Finish = Literal["stop", "length", "tool_calls", "content_filter"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Inline(_Model):
    """Bytes the client sent inline: a MIME type and base64 data (checked)."""

    mime: str
    data: str


class Text(_Model):
    kind: Literal["text"] = "text"
    text: str


class Image(_Model):
    """An image (or, with ``declared`` audio or video, another medium) by URL or inline."""

    kind: Literal["image"] = "image"
    url: str  # http(s) or a data URI, as sent
    inline: Inline | None = None  # the data URI, decoded and checked
    detail: Literal["auto", "low", "high"] | None = None
    declared: str | None = None  # image_url.mime_type, for what the URL points at


class File(_Model):
    kind: Literal["file"] = "file"
    inline: Inline
    filename: str | None = None


class Audio(_Model):
    kind: Literal["audio"] = "audio"
    inline: Inline


Part = Text | Image | File | Audio


class ToolCall(_Model):
    id: str
    name: str
    arguments: dict[str, Any]
    extra_content: dict[str, Any] | None = None  # Gemini's thought signature rides here
    raw_arguments: str | None = None  # the arguments as a provider wrote them (JSON text), kept as written


class Thinking(_Model):
    """A reasoning block with what proves it (Anthropic's and Bedrock's signatures), handed
    back unchanged; a redacted one carries only its opaque ``data``."""

    kind: Literal["thinking", "redacted_thinking"]
    text: str = ""
    signature: str | None = None
    data: str | None = None


class System(_Model):
    role: Literal["system", "developer"]
    text: str
    name: str | None = None


class User(_Model):
    role: Literal["user"] = "user"
    parts: list[Part]
    name: str | None = None


class Assistant(_Model):
    role: Literal["assistant"] = "assistant"
    text: str = ""
    tool_calls: list[ToolCall] = []
    thinking: list[Thinking] = []
    reasoning: str = ""  # reasoning_content as the client sent it back (Cohere's tool plan)
    extra_content: dict[str, Any] | None = None
    name: str | None = None


class ToolResult(_Model):
    role: Literal["tool"] = "tool"
    tool_call_id: str
    text: str
    name: str | None = None  # the function's name, where the client gave it


Message = System | User | Assistant | ToolResult


class Tool(_Model):
    name: str
    description: str | None = None
    parameters: dict[str, Any]
    strict: bool | None = None


class NamedTool(_Model):
    name: str


ToolChoice = Literal["auto", "none", "required"] | NamedTool


class JsonFormat(_Model):
    """``response_format`` json_object (no schema) or json_schema."""

    schema_: dict[str, Any] | None = None
    name: str = ""
    strict: bool | None = None


class Conversation(_Model):
    """A chat request, checked and typed. ``given`` holds the client's own parameter names
    (with non-null values), for the adapter that must refuse the ones it cannot honour."""

    messages: list[Message]
    tools: list[Tool] = []
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    json_format: JsonFormat | None = None
    reasoning: Effort | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = []
    seed: int | None = None
    n: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    user: str | None = None
    given: frozenset[str] = frozenset()

    @property
    def system_text(self) -> list[str]:
        return [m.text for m in self.messages if isinstance(m, System) and m.text]


class Choice(_Model):
    """One answer of a model: the assistant turn (which may be sent back as it is), why it
    ended, and OpenAI-shaped logprobs where the provider gave them."""

    index: int = 0
    message: Assistant
    finish: Finish
    logprobs: dict[str, Any] | None = None


class Answer(_Model):
    """A provider's reply, read: its id and its choices (one, or ``n``). The usage goes apart
    (services/edge/providers/base.Usage), as metering reads it."""

    id: str
    choices: list[Choice]
