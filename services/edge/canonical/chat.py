"""OpenAI's chat completions request, read into a :class:`Conversation`.

Every check a request needs whatever provider it goes to happens here, once, as a 400 in
OpenAI's shape whose ``param`` says where (``messages[2].content[1]``): roles, content parts
(text, ``image_url`` with an optional ``mime_type``, ``input_audio``, ``file`` as
``file_data`` or ``data`` with ``media_type``), data URIs and base64, tool calls and their JSON
arguments, tools, ``tool_choice``, ``response_format``, ``reasoning_effort`` and the sampling
parameters. The route has checked the fields it needs itself (services/edge/body.py).
"""

from __future__ import annotations

from typing import Any

from services.edge.canonical.model import (
    Assistant,
    Audio,
    Conversation,
    File,
    Image,
    Inline,
    JsonFormat,
    Message,
    NamedTool,
    Part,
    System,
    Text,
    Thinking,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    User,
)
from services.edge.providers import common
from services.edge.providers.common import invalid

ROLES = ("system", "developer", "user", "assistant", "tool")


def read(body: dict[str, Any]) -> Conversation:
    names: dict[str, str] = {}  # tool call id -> function name, of the turns read so far
    messages = [_message(i, m, names) for i, m in enumerate(body["messages"])]
    tools = [
        Tool(name=t["name"], description=t["description"], parameters=t["parameters"], strict=_strict(body, i))
        for i, t in enumerate(common.tools_of(body))
    ]
    choice = common.tool_choice_of(body, [t.name for t in tools])
    tool_choice: ToolChoice | None = NamedTool(name=choice[1]) if isinstance(choice, tuple) else choice  # type: ignore[assignment]
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise invalid("'parallel_tool_calls' must be a boolean.", "parallel_tool_calls")
    return Conversation(
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        json_format=_json_format(body),
        reasoning=common.reasoning_effort(body),  # type: ignore[arg-type]
        max_tokens=common.max_tokens(body),
        temperature=_number(body, "temperature"),
        top_p=_number(body, "top_p"),
        stop=common.stop_sequences(body) or [],
        seed=_integer(body, "seed"),
        frequency_penalty=_number(body, "frequency_penalty"),
        presence_penalty=_number(body, "presence_penalty"),
        user=body.get("user"),
        given=frozenset(k for k, v in body.items() if v is not None),
    )


def _message(i: int, message: dict[str, Any], names: dict[str, str]) -> Message:
    where, role = f"messages[{i}]", str(message["role"])
    name = message.get("name")
    if name is not None and not isinstance(name, str):
        raise invalid(f"{where}.name must be a string.", f"{where}.name")
    if role in ("system", "developer"):
        return System(role=role, text=common.text_of(message.get("content"), where), name=name)  # type: ignore[arg-type]
    if role == "user":
        parts = [
            _part(p, f"{where}.content[{j}]") for j, p in enumerate(common.content_parts(message.get("content"), where))
        ]
        return User(parts=parts, name=name)
    if role == "assistant":
        return _assistant(message, where, names)
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str):
            raise invalid(f"{where}.tool_call_id is required for a tool message.", f"{where}.tool_call_id")
        text = common.text_of(message.get("content"), where)
        return ToolResult(tool_call_id=call_id, text=text, name=name or names.get(call_id))
    raise invalid(f"{where}.role {role!r} is not one of {', '.join(ROLES)}.", where)


def _part(part: dict[str, Any], param: str) -> Part:
    kind = part["type"]
    if kind == "text":
        return Text(text=common.part_text(part, param))
    if kind == "image_url":
        url, detail = common.image_url_of(part, param)
        declared = common.declared_mime(part, param)
        inline = None
        if url.startswith("data:"):
            media = common.data_uri(url, param)
            inline = Inline(mime=media.mime, data=media.data)
        elif not url.startswith(("http://", "https://")):
            raise invalid("image_url.url must be an http(s) URL or a data URI.", param, "invalid_image_url")
        return Image(url=url, inline=inline, detail=detail, declared=declared)  # type: ignore[arg-type]
    if kind == "file":
        media, filename = common.file_of(part, param)
        return File(inline=Inline(mime=media.mime, data=media.data), filename=filename)
    if kind == "input_audio":
        media = common.audio_of(part, param)
        return Audio(inline=Inline(mime=media.mime, data=media.data))
    raise invalid(f"content part type {kind!r} is not one of text, image_url, input_audio, file.", param)


def _assistant(message: dict[str, Any], where: str, names: dict[str, str]) -> Assistant:
    calls = message.get("tool_calls")
    tool_calls = []
    if calls is not None:
        if not isinstance(calls, list):
            raise invalid(f"{where}.tool_calls must be an array.", f"{where}.tool_calls")
        for k, tc in enumerate(calls):
            param = f"{where}.tool_calls[{k}]"
            if not isinstance(tc, dict) or not isinstance(tc.get("id"), str):
                raise invalid("a tool call needs an id.", param)
            args = common.tool_arguments(tc, param)
            extra = tc.get("extra_content")
            name = tc["function"]["name"]
            names[tc["id"]] = name
            tool_calls.append(
                ToolCall(
                    id=tc["id"], name=name, arguments=args, extra_content=extra if isinstance(extra, dict) else None
                )
            )
    thinking = []
    blocks = message.get("thinking_blocks")
    for block in blocks if isinstance(blocks, list) else []:
        if not isinstance(block, dict):
            continue  # not ours to judge: thinking blocks go back only to the provider that made them
        if block.get("type") == "thinking" and isinstance(block.get("signature"), str):
            text = block.get("thinking")
            thinking.append(
                Thinking(kind="thinking", text=text if isinstance(text, str) else "", signature=block["signature"])
            )
        elif block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
            thinking.append(Thinking(kind="redacted_thinking", data=block["data"]))
    reasoning = message.get("reasoning_content")
    extra = message.get("extra_content")
    name = message.get("name")
    return Assistant(
        text=common.assistant_text(message, where),
        tool_calls=tool_calls,
        thinking=thinking,
        reasoning=reasoning if isinstance(reasoning, str) else "",
        extra_content=extra if isinstance(extra, dict) else None,
        name=name,
    )


def _json_format(body: dict[str, Any]) -> JsonFormat | None:
    kind, schema, name = common.response_format_of(body)
    if kind == "text":
        return None
    strict = None
    if kind == "json_schema":
        value = body["response_format"]["json_schema"].get("strict")
        strict = value if isinstance(value, bool) else None
    return JsonFormat(schema_=schema, name=name, strict=strict)


def _strict(body: dict[str, Any], i: int) -> bool | None:
    value = body["tools"][i]["function"].get("strict")
    return value if isinstance(value, bool) else None


def _number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{name} must be a number.", name)
    return value


def _integer(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{name} must be an integer.", name)
    return value
