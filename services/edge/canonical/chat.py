"""OpenAI's chat completions request, read into a :class:`Conversation`.

Every check a request needs whatever provider it goes to happens here, once, as a 400 in
OpenAI's shape whose ``param`` says where (``messages[2].content[1]``): roles, content parts
(text, ``image_url`` with an optional ``mime_type``, ``input_audio``, ``file`` as
``file_data`` or ``data`` with ``media_type``), data URIs and base64, tool calls and their JSON
arguments, tools, ``tool_choice``, ``response_format``, ``reasoning_effort`` and the sampling
parameters. The route has checked the fields it needs itself (services/edge/body.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, cast, get_args

from services.edge.canonical.model import (
    Assistant,
    Audio,
    Conversation,
    Effort,
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
from services.edge.providers.common import invalid

ROLES = ("system", "developer", "user", "assistant", "tool")


def read(body: dict[str, Any]) -> Conversation:
    names: dict[str, str] = {}  # tool call id -> function name, of the turns read so far
    messages = [_message(i, m, names) for i, m in enumerate(body["messages"])]
    tools = tools_of(body)
    return Conversation(
        messages=messages,
        tools=tools,
        tool_choice=tool_choice_of(body, [t.name for t in tools]),
        parallel_tool_calls=_boolean(body, "parallel_tool_calls"),
        json_format=_json_format(body),
        reasoning=reasoning_effort(body),
        max_tokens=max_tokens(body),
        temperature=_number(body, "temperature"),
        top_p=_number(body, "top_p"),
        stop=stop_sequences(body) or [],
        seed=_integer(body, "seed"),
        n=_count(body, "n"),
        logprobs=_boolean(body, "logprobs"),
        top_logprobs=_integer(body, "top_logprobs"),
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
        return System(role=role, text=text_of(message.get("content"), where), name=name)  # type: ignore[arg-type]
    if role == "user":
        parts = [_part(p, f"{where}.content[{j}]") for j, p in enumerate(content_parts(message.get("content"), where))]
        return User(parts=parts, name=name)
    if role == "assistant":
        return _assistant(message, where, names)
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str):
            raise invalid(f"{where}.tool_call_id is required for a tool message.", f"{where}.tool_call_id")
        text = text_of(message.get("content"), where)
        return ToolResult(tool_call_id=call_id, text=text, name=names.get(call_id) or name)
    raise invalid(f"{where}.role {role!r} is not one of {', '.join(ROLES)}.", where)


def _part(part: dict[str, Any], param: str) -> Part:
    kind = part["type"]
    if kind == "text":
        return Text(text=part_text(part, param))
    if kind == "image_url":
        url, detail = image_url_of(part, param)
        declared = declared_mime(part, param)
        inline = None
        if url.startswith("data:"):
            media = data_uri(url, param)
            inline = Inline(mime=media.mime, data=media.data)
        elif not url.startswith(("http://", "https://")):
            raise invalid("image_url.url must be an http(s) URL or a data URI.", param, "invalid_image_url")
        return Image(url=url, inline=inline, detail=detail, declared=declared)  # type: ignore[arg-type]
    if kind == "file":
        media, filename = file_of(part, param)
        return File(inline=Inline(mime=media.mime, data=media.data), filename=filename)
    if kind == "input_audio":
        media = audio_of(part, param)
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
            args = tool_arguments(tc, param)
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
        text=assistant_text(message, where),
        tool_calls=tool_calls,
        thinking=thinking,
        reasoning=reasoning if isinstance(reasoning, str) else "",
        extra_content=extra if isinstance(extra, dict) else None,
        name=name,
    )


def _json_format(body: dict[str, Any]) -> JsonFormat | None:
    kind, schema, name = response_format_of(body)
    if kind == "text":
        return None
    strict = None
    if kind == "json_schema":
        value = body["response_format"]["json_schema"].get("strict")
        strict = value if isinstance(value, bool) else None
    return JsonFormat(schema_=schema, name=name, strict=strict)


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


def _count(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise invalid(f"'{name}' must be a positive integer.", name)
    return value


def _boolean(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise invalid(f"'{name}' must be a boolean.", name)
    return value


# --- the parts of a chat request, checked ------------------------------------------------


def max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise invalid(f"'{name}' must be a positive integer.", name)
        return value
    return None


def stop_sequences(body: dict[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise invalid("'stop' must be a string or an array of strings.", "stop")


def text_of(content: Any, where: str) -> str:
    """The text of a message whose content must be text (system, tool results)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid(f"{where}.content[{i}] must be a text part here.", f"{where}.content")
            texts.append(part["text"])
        return "\n".join(texts)
    raise invalid(f"{where}.content must be a string or an array of parts.", f"{where}.content")


def part_text(part: dict[str, Any], param: str) -> str:
    """The text of a ``text`` content part, checked."""
    if not isinstance(part.get("text"), str):
        raise invalid("a text part needs a string 'text'.", param)
    return str(part["text"])


def content_parts(content: Any, where: str) -> list[dict[str, Any]]:
    """A message's content as a list of OpenAI parts (a string becomes one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        for i, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise invalid(f"{where}.content[{i}] must be an object with a 'type'.", f"{where}.content")
        return content
    raise invalid(f"{where}.content must be a string or an array of parts.", f"{where}.content")


# Common misspellings of registered MIME types, as clients send them.
_MIME_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}

_DATA_URI = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w-]+=[^;,]*)*)(;base64)?,(.*)$", re.DOTALL)


def data_uri(uri: str, param: str) -> Inline:
    """Parse and check a ``data:`` URI; broken base64 is a 400 naming the part."""
    match = _DATA_URI.match(uri)
    if match is None or match.group(3) is None:
        raise invalid("a data URI must look like data:<mime>;base64,<data>.", param, "invalid_data_uri")
    mime = (match.group(1) or "").lower()
    if not mime:
        raise invalid("the data URI has no MIME type.", param, "invalid_data_uri")
    mime = _MIME_ALIASES.get(mime, mime)
    return Inline(mime=mime, data=checked_base64(match.group(4), param))


def checked_base64(data: str, param: str) -> str:
    data = re.sub(r"\s+", "", data)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid("the base64 data is not valid base64.", param, "invalid_base64") from exc
    if not raw:
        raise invalid("the base64 data is empty.", param, "invalid_base64")
    return data


def image_url_of(part: dict[str, Any], param: str) -> tuple[str, str | None]:
    """``(url, detail)`` of an ``image_url`` part (``image_url.image_url`` is taken for the
    URL too, as some gateways' pages write it)."""
    image = part.get("image_url")
    if isinstance(image, str):
        return image, None
    if isinstance(image, dict) and "url" not in image and isinstance(image.get("image_url"), str):
        image = {**image, "url": image["image_url"]}
    if not isinstance(image, dict) or not isinstance(image.get("url"), str) or not image["url"]:
        raise invalid("an image_url part needs image_url.url.", param)
    detail = image.get("detail")
    if detail is not None and detail not in ("auto", "low", "high"):
        raise invalid("image_url.detail must be auto, low or high.", param)
    return image["url"], detail


def declared_mime(part: dict[str, Any], param: str) -> str | None:
    """The MIME type an ``image_url`` part declares for what it points at
    (``image_url.mime_type``: audio and video for Gemini, as TrueFoundry's page sends them)."""
    image = part.get("image_url")
    value = image.get("mime_type") if isinstance(image, dict) else None
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[\w.+-]+/[\w.+-]+", value):
        raise invalid("image_url.mime_type must be a MIME type such as audio/mp3 or video/mp4.", param)
    value = value.lower()
    return _MIME_ALIASES.get(value, value)


def file_of(part: dict[str, Any], param: str) -> tuple[Inline, str | None]:
    """The inline file of a ``file`` part: ``file.file_data`` as a data URI (OpenAI's shape), or
    ``file.data`` in base64 with ``file.media_type`` (the Vercel AI Gateway's)."""
    file = part.get("file")
    if not isinstance(file, dict):
        raise invalid("a file part needs a 'file' object.", param)
    filename = file.get("filename") if isinstance(file.get("filename"), str) else None
    if isinstance(file.get("data"), str) and "file_data" not in file:
        value = file["data"]
        if value.startswith("data:"):
            return data_uri(value, param), filename
        mime = file.get("media_type")
        if not isinstance(mime, str) or not re.fullmatch(r"[\w.+-]+/[\w.+-]+", mime):
            raise invalid("file.data needs file.media_type (for example application/pdf).", param)
        mime = mime.lower()
        return Inline(mime=_MIME_ALIASES.get(mime, mime), data=checked_base64(value, param)), filename
    if isinstance(file.get("file_data"), str):
        value = file["file_data"]
        if value.startswith("data:"):
            return data_uri(value, param), filename
        mime = "application/pdf" if (filename or "").lower().endswith(".pdf") else ""
        if not mime:
            raise invalid("file.file_data must be a data URI (data:<mime>;base64,...).", param, "invalid_data_uri")
        return Inline(mime=mime, data=checked_base64(value, param)), filename
    if "file_id" in file:
        raise invalid(
            "file_id refers to a file uploaded to OpenAI; this provider needs the file inline (file.file_data).",
            param,
            "unsupported_parameter",
        )
    raise invalid("a file part needs file.file_data (a data URI), or file.data with file.media_type.", param)


_AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mp3", "flac": "audio/flac", "ogg": "audio/ogg", "aac": "audio/aac"}


def audio_of(part: dict[str, Any], param: str) -> Inline:
    audio = part.get("input_audio")
    if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
        raise invalid("an input_audio part needs input_audio.data.", param)
    fmt = audio.get("format")
    if fmt not in _AUDIO_MIME:
        raise invalid(f"input_audio.format must be one of {', '.join(_AUDIO_MIME)}.", param)
    return Inline(mime=_AUDIO_MIME[str(fmt)], data=checked_base64(audio["data"], param))


def tool_arguments(call: dict[str, Any], param: str) -> dict[str, Any]:
    """The arguments of an assistant tool call as an object (the wire carries a JSON string)."""
    if not isinstance(call, dict):
        raise invalid("a tool call must be an object.", param)
    fn = call.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise invalid("a tool call needs function.name.", param)
    args = fn.get("arguments")
    if args is None or args == "":
        return {}
    if isinstance(args, dict):
        return args
    if not isinstance(args, str):
        raise invalid("function.arguments must be a JSON string.", param)
    try:
        parsed = json.loads(args)
    except ValueError as exc:
        raise invalid("function.arguments is not valid JSON.", param) from exc
    if not isinstance(parsed, dict):
        raise invalid("function.arguments must encode a JSON object.", param)
    return parsed


def tools_of(body: dict[str, Any]) -> list[Tool]:
    """The function tools of a request, checked."""
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid("'tools' must be an array.", "tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise invalid(f"tools[{i}] must be a function tool.", f"tools[{i}]")
        fn = tool["function"]
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            raise invalid(f"tools[{i}].function.name is required.", f"tools[{i}].function.name")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise invalid(f"tools[{i}].function.parameters must be an object.", f"tools[{i}].function.parameters")
        if params and params.get("type") != "object":  # OpenAI's own rule; other providers fail on it later
            raise invalid(
                f"tools[{i}].function.parameters must be a JSON Schema of type 'object'.",
                f"tools[{i}].function.parameters",
            )
        out.append(
            Tool(
                name=fn["name"],
                description=fn.get("description") if isinstance(fn.get("description"), str) else None,
                parameters=params or {"type": "object", "properties": {}},
                strict=fn.get("strict") if isinstance(fn.get("strict"), bool) else None,
            )
        )
    return out


def tool_choice_of(body: dict[str, Any], tool_names: list[str]) -> ToolChoice | None:
    """``auto`` / ``none`` / ``required``, a named function, or None when absent."""
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return cast(ToolChoice, choice)
    if isinstance(choice, dict) and choice.get("type") == "function":
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or name not in tool_names:
            raise invalid("tool_choice names a function that is not in 'tools'.", "tool_choice")
        return NamedTool(name=name)
    raise invalid("tool_choice must be auto, none, required or a named function.", "tool_choice")


def response_format_of(body: dict[str, Any]) -> tuple[str, dict[str, Any] | None, str]:
    """``(kind, schema, name)`` with kind ``text``, ``json_object`` or ``json_schema``."""
    fmt = body.get("response_format")
    if fmt is None:
        return "text", None, ""
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise invalid("response_format.type must be text, json_object or json_schema.", "response_format")
    if fmt["type"] != "json_schema":
        return str(fmt["type"]), None, ""
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise invalid("response_format.json_schema needs a name.", "response_format.json_schema")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise invalid("response_format.json_schema.schema must be an object.", "response_format.json_schema.schema")
    return "json_schema", schema, spec["name"]


def reasoning_effort(body: dict[str, Any]) -> Effort | None:
    effort = body.get("reasoning_effort")
    if effort is None:
        return None
    if effort in get_args(Effort):
        return cast(Effort, effort)
    raise invalid("reasoning_effort must be none, minimal, low, medium or high.", "reasoning_effort")


def assistant_text(message: dict[str, Any], where: str) -> str:
    """The text of an assistant message (text and refusal parts joined)."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in ("text", "refusal")
        )
    return text_of(content, where)
