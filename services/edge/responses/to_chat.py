"""A Responses API request as a chat completions request: the form every provider adapter
takes (services/edge/providers), so a response is routed, limited, metered and translated
to Anthropic, Gemini and the OpenAI-compatible providers exactly as chat is.

Items become messages: a run of assistant items (reasoning, an assistant message, function
calls) becomes one assistant message, with the reasoning's thinking blocks (signatures
included) and its tool calls; a function call's output becomes a ``tool`` message.
"""

from __future__ import annotations

from typing import Any

from services.edge.responses import reasoning
from services.edge.responses.items import (
    FunctionCall,
    FunctionCallOutput,
    InputFile,
    InputImage,
    InputText,
    Message,
    NamedFunction,
    OutputText,
    Reasoning,
    Refusal,
    ResponsesRequest,
)
from shared.errors import UNSUPPORTED, GatewayError

AnyItem = Message | FunctionCall | FunctionCallOutput | Reasoning


def chat_body(request: ResponsesRequest, context: list[AnyItem]) -> dict[str, Any]:
    """The chat completions body for ``request``, after the stored ``context`` (the items of
    the responses it continues)."""
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    messages.extend(chat_messages([*context, *request.input_items()]))
    if not messages:
        raise GatewayError(UNSUPPORTED, "input: give at least one item (or a string).", param="input")
    body: dict[str, Any] = {"model": request.model, "messages": messages, "stream": request.stream}
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    if request.max_output_tokens is not None:
        body["max_completion_tokens"] = request.max_output_tokens
    for name in ("temperature", "top_p", "parallel_tool_calls", "user"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    **({"description": t.description} if t.description is not None else {}),
                    "parameters": t.parameters or {"type": "object", "properties": {}},
                    **({"strict": t.strict} if t.strict is not None else {}),
                },
            }
            for t in request.tools
        ]
        choice = request.tool_choice
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}} if isinstance(choice, NamedFunction) else choice
        )
    fmt = request.text.format
    if fmt.type == "json_schema":
        schema: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema_ or {}}
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        if fmt.description:
            schema["description"] = fmt.description
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif fmt.type == "json_object":
        body["response_format"] = {"type": "json_object"}
    if request.reasoning is not None and request.reasoning.effort not in (None, "none"):
        effort = request.reasoning.effort
        body["reasoning_effort"] = "low" if effort == "minimal" else ("high" if effort == "xhigh" else effort)
    return body


def chat_messages(items: list[AnyItem]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    turn: dict[str, Any] | None = None  # the assistant message being gathered

    def assistant() -> dict[str, Any]:
        nonlocal turn
        if turn is None:
            turn = {"role": "assistant", "content": None}
            messages.append(turn)
        return turn

    for item in items:
        if isinstance(item, Reasoning):
            blocks = reasoning.unseal(item.encrypted_content)
            if blocks:
                target = assistant()
                if target.get("content") or target.get("tool_calls"):
                    turn = None  # thinking opens a new assistant turn
                    target = assistant()
                target.setdefault("thinking_blocks", []).extend(blocks)
        elif isinstance(item, FunctionCall):
            call: dict[str, Any] = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            if item.extra_content:
                call["extra_content"] = item.extra_content  # Gemini's signature, as it came
            assistant().setdefault("tool_calls", []).append(call)
        elif isinstance(item, FunctionCallOutput):
            turn = None
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": _tool_output(item)})
        elif item.role == "assistant":
            target = assistant()
            if target.get("tool_calls"):
                turn = None
                target = assistant()
            text = _assistant_text(item)
            target["content"] = (target.get("content") or "") + text
            if item.extra_content:
                target["extra_content"] = item.extra_content
        else:
            turn = None
            messages.append({"role": item.role, "content": _user_content(item)})
    return messages


def _assistant_text(item: Message) -> str:
    if isinstance(item.content, str):
        return item.content
    out = []
    for part in item.content:
        if isinstance(part, OutputText | InputText):
            out.append(part.text)
        elif isinstance(part, Refusal):
            out.append(part.refusal)
    return "".join(out)


def _user_content(item: Message) -> str | list[dict[str, Any]]:
    if isinstance(item.content, str):
        return item.content
    parts = [_part(p, item.role) for p in item.content]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts) if len(parts) == 1 else parts
    return parts


def _part(part: Any, role: str) -> dict[str, Any]:
    if isinstance(part, InputText | OutputText):
        return {"type": "text", "text": part.text}
    if isinstance(part, Refusal):
        return {"type": "text", "text": part.refusal}
    if isinstance(part, InputImage):
        if not part.image_url:
            raise GatewayError(
                UNSUPPORTED,
                "input_image: give image_url (a URL or a data URI); file ids are not supported.",
                param="input",
            )
        return {"type": "image_url", "image_url": {"url": part.image_url, "detail": part.detail}}
    if isinstance(part, InputFile):
        if part.file_data:
            file: dict[str, Any] = {"file_data": part.file_data}
            if part.filename:
                file["filename"] = part.filename
            return {"type": "file", "file": file}
        raise GatewayError(
            UNSUPPORTED, "input_file: give file_data (a data URI); file ids and URLs are not supported.", param="input"
        )
    raise GatewayError(UNSUPPORTED, f"a {role} message cannot hold this content part", param="input")


def _tool_output(item: FunctionCallOutput) -> str | list[dict[str, Any]]:
    if isinstance(item.output, str):
        return item.output
    parts = [_part(p, "tool") for p in item.output]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts
