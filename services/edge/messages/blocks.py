"""Anthropic's Messages API request, typed: what ``POST /v1/messages`` accepts when it is
translated for a provider other than Anthropic (a request for Anthropic is passed through
as it came, and Anthropic checks it).

Checked once, at the door: a wrong field is a 400 in Anthropic's shape naming it
(``messages[0].content[1].source``); a block or tool the translation cannot carry (server
tools, search results, containers) is refused by name rather than dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.edge.body import error_path
from shared.errors import INVALID_REQUEST, MISSING_PARAM, UNSUPPORTED, GatewayError


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Base64Source(_Model):
    type: Literal["base64"]
    media_type: str
    data: str


class UrlSource(_Model):
    type: Literal["url"]
    url: str


class TextSource(_Model):
    type: Literal["text"]
    media_type: str = "text/plain"
    data: str


class Text(_Model):
    type: Literal["text"]
    text: str


class Image(_Model):
    type: Literal["image"]
    source: Annotated[Base64Source | UrlSource, Field(discriminator="type")]


class Document(_Model):
    type: Literal["document"]
    source: Annotated[Base64Source | UrlSource | TextSource, Field(discriminator="type")]
    title: str | None = None


class ToolUse(_Model):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResult(_Model):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Annotated[Text | Image | Document, Field(discriminator="type")]] = ""
    is_error: bool = False


class Thinking(_Model):
    type: Literal["thinking"]
    thinking: str
    signature: str = ""


class RedactedThinking(_Model):
    type: Literal["redacted_thinking"]
    data: str


Block = Annotated[
    Text | Image | Document | ToolUse | ToolResult | Thinking | RedactedThinking, Field(discriminator="type")
]


class Message(_Model):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class Tool(_Model):
    type: Literal["custom"] | None = None
    name: str
    description: str | None = None
    input_schema: dict[str, Any]


class ToolChoice(_Model):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingOptions(_Model):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class Metadata(_Model):
    user_id: str | None = None


class MessagesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    max_tokens: int = Field(ge=1)
    messages: list[Message] = Field(min_length=1)
    system: str | list[Text] | None = None
    tools: list[Tool] = Field(default_factory=list)
    tool_choice: ToolChoice | None = None
    stop_sequences: list[str] = Field(default_factory=list)
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stream: bool = False
    metadata: Metadata | None = None
    thinking: ThinkingOptions | None = None

    @property
    def thinks(self) -> bool:
        return self.thinking is not None and self.thinking.type != "disabled"


_KNOWN_BLOCKS = ("text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking")


def parse_request(body: dict[str, Any]) -> MessagesRequest:
    _refuse_server_tools(body.get("tools"))
    _refuse_other_blocks(body.get("messages"))
    try:
        return MessagesRequest.model_validate(body)
    except ValidationError as exc:
        raise _bad(exc, body) from None


def _refuse_server_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        return
    for i, tool in enumerate(tools):
        if isinstance(tool, dict) and tool.get("type") not in (None, "custom"):
            raise GatewayError(
                UNSUPPORTED,
                f"tools.{i}: Anthropic's server tools ({tool.get('type')!r}) run only on Anthropic; "
                "this model is served by another provider, which takes custom tools only.",
                param=f"tools.{i}.type",
            )


def _refuse_other_blocks(messages: Any) -> None:
    if not isinstance(messages, list):
        return
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            kind = block.get("type") if isinstance(block, dict) else None
            if isinstance(kind, str) and kind not in _KNOWN_BLOCKS:
                raise GatewayError(
                    UNSUPPORTED,
                    f"messages.{i}.content.{j}: blocks of type {kind!r} cannot be translated for this model's "
                    "provider (only Anthropic takes them).",
                    param=f"messages.{i}.content.{j}.type",
                )


def _bad(exc: ValidationError, body: dict[str, Any]) -> GatewayError:
    """The deepest error (the union branch the client meant), located as Anthropic does:
    ``messages.0.content.1.source``."""
    first = max(exc.errors(), key=lambda e: len(e.get("loc", ())))
    where = ".".join(str(p) for p in error_path(body, first.get("loc", ())))
    if first.get("type") == "missing":
        return GatewayError(MISSING_PARAM, f"{where}: Field required", param=where or None)
    return GatewayError(INVALID_REQUEST, f"{where}: {first.get('msg')}", param=where or None)
