"""The Responses API's request and items, typed: what ``POST /v1/responses`` accepts, what a
stored response keeps, and the output items the gateway builds.

A request is checked here once, at the door (a 400 naming the field, in OpenAI's shape);
past this module nothing reads the client's JSON by hand. Unknown fields of the request are
kept (``extra="allow"``) so a newer SDK's additions do not fail; unknown item types are
refused, since the gateway could not translate them faithfully.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.edge.body import error_path
from shared.errors import INVALID_REQUEST, MISSING_PARAM, UNSUPPORTED, GatewayError


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- content parts ------------------------------------------------------------------------


class InputText(_Model):
    type: Literal["input_text"]
    text: str


class OutputText(_Model):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class Refusal(_Model):
    type: Literal["refusal"]
    refusal: str


class InputImage(_Model):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto"] = "auto"


class InputFile(_Model):
    type: Literal["input_file"]
    file_data: str | None = None  # a data URI or bare base64
    file_url: str | None = None
    file_id: str | None = None
    filename: str | None = None


Part = Annotated[InputText | OutputText | Refusal | InputImage | InputFile, Field(discriminator="type")]


# --- items --------------------------------------------------------------------------------


class Message(_Model):
    type: Literal["message"] = "message"
    id: str | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Part]
    status: str | None = None
    # A provider's signature of the item, to hand back as it came (Gemini's
    # ``{"google": {"thought_signature": ...}}``, as Google's OpenAI-compatible API shapes it).
    extra_content: dict[str, Any] | None = None


class FunctionCall(_Model):
    type: Literal["function_call"]
    id: str | None = None
    call_id: str
    name: str
    arguments: str
    status: str | None = None
    extra_content: dict[str, Any] | None = None  # as on Message


class FunctionCallOutput(_Model):
    type: Literal["function_call_output"]
    id: str | None = None
    call_id: str
    output: str | list[Part]
    status: str | None = None


class SummaryText(_Model):
    type: Literal["summary_text"] = "summary_text"
    text: str


class Reasoning(_Model):
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[SummaryText] = Field(default_factory=list)
    # Opaque to the client: the provider's signed thinking blocks (services/edge/responses/
    # reasoning.py), so a later turn can hand them back exactly.
    encrypted_content: str | None = None
    status: str | None = None


Item = Annotated[Message | FunctionCall | FunctionCallOutput | Reasoning, Field(discriminator="type")]


class _Items(BaseModel):
    items: list[Item]


# --- tools and formats --------------------------------------------------------------------


class FunctionTool(_Model):
    type: Literal["function"]
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunction(_Model):
    type: Literal["function"]
    name: str


ToolChoice = Literal["auto", "none", "required"] | NamedFunction


class TextFormat(_Model):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class TextOptions(_Model):
    format: TextFormat = Field(default_factory=TextFormat)
    verbosity: str | None = None


class ReasoningOptions(_Model):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[Item] = Field(default_factory=list)
    instructions: str | None = None
    tools: list[FunctionTool] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool | None = None
    text: TextOptions = Field(default_factory=TextOptions)
    reasoning: ReasoningOptions | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    include: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    user: str | None = None
    truncation: Literal["auto", "disabled"] | None = None

    def input_items(self) -> list[Message | FunctionCall | FunctionCallOutput | Reasoning]:
        if isinstance(self.input, str):
            return [Message(role="user", content=self.input)]
        return list(self.input)


def parse_request(body: dict[str, Any]) -> ResponsesRequest:
    """The request, typed; a 400 in OpenAI's shape naming the first field that is wrong."""
    _refuse_other_tools(body.get("tools"))
    _normalise_items(body.get("input"))
    try:
        return ResponsesRequest.model_validate(body)
    except ValidationError as exc:
        raise _bad(exc, body) from None


def parse_items(raw: list[Any]) -> list[Message | FunctionCall | FunctionCallOutput | Reasoning]:
    """Stored items, read back."""
    return list(_Items.model_validate({"items": raw}).items)


def _normalise_items(items: Any) -> None:
    """Items may leave out ``"type": "message"`` (the SDKs' easy input messages)."""
    if not isinstance(items, list):
        return
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind is None and "role" in item:
            item["type"] = "message"
        elif kind not in (None, "message", "function_call", "function_call_output", "reasoning"):
            raise GatewayError(
                UNSUPPORTED,
                f"input[{i}]: items of type {kind!r} are not supported by this gateway "
                "(it accepts message, function_call, function_call_output and reasoning).",
                param=f"input[{i}].type",
            )


def _refuse_other_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        return
    for i, tool in enumerate(tools):
        if isinstance(tool, dict) and tool.get("type") != "function":
            raise GatewayError(
                UNSUPPORTED,
                f"tools[{i}]: tools of type {tool.get('type')!r} are not supported by this gateway; "
                "only function tools are.",
                param=f"tools[{i}].type",
            )


def _bad(exc: ValidationError, body: dict[str, Any]) -> GatewayError:
    """The most specific error (a union's branches each report one: the deepest is the
    branch the client meant), located as the client wrote it: ``input[0].role``."""
    first = max(exc.errors(), key=lambda e: len(e.get("loc", ())))
    where = ""
    for part in error_path(body, first.get("loc", ())):
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else part)
    if first.get("type") == "missing":
        return GatewayError(MISSING_PARAM, f"Missing required parameter: '{where}'.", param=where or None)
    return GatewayError(INVALID_REQUEST, f"Invalid value for '{where}': {first.get('msg')}.", param=where or None)
