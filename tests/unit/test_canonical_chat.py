"""A chat completions request read into the typed conversation: what each field becomes, and
the 400s (with where) for what no provider could take."""

from __future__ import annotations

from typing import Any

import pytest

from services.edge.canonical import chat
from services.edge.canonical.model import (
    Assistant,
    Audio,
    File,
    Image,
    NamedTool,
    System,
    Text,
    ToolResult,
    User,
)
from shared.errors import GatewayError

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def _body(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


def test_a_full_request_becomes_typed_messages_parts_and_settings() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "in English"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/v.mp4", "mime_type": "video/mp4"}},
                    {
                        "type": "file",
                        "file": {"data": "JVBERg==", "media_type": "application/pdf", "filename": "a.pdf"},
                    },
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        "extra_content": {"google": {"thought_signature": "sig"}},
                    }
                ],
                "thinking_blocks": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s1"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "thinking", "thinking": "unsigned"},  # no signature: not handed back
                ],
                "reasoning_content": "I will call get_weather.",
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "strict": True, "schema": {}}},
        "reasoning_effort": "low",
        "max_completion_tokens": 50,
        "temperature": 0.2,
        "top_p": 1,
        "stop": "END",
        "seed": 7,
        "user": "u-1",
        "logprobs": None,
    }
    conv = chat.read(body)
    system, developer, user, assistant, result = conv.messages
    assert isinstance(system, System) and system.text == "be brief"
    assert isinstance(developer, System) and developer.role == "developer" and developer.text == "in English"
    assert conv.system_text == ["be brief", "in English"]
    assert isinstance(user, User)
    text, image, video, pdf, audio = user.parts
    assert isinstance(text, Text) and text.text == "look"
    assert isinstance(image, Image) and image.inline is not None and image.inline.mime == "image/png"
    assert image.detail == "low"
    assert isinstance(video, Image) and video.inline is None and video.declared == "video/mp4"
    assert isinstance(pdf, File) and pdf.inline.mime == "application/pdf" and pdf.filename == "a.pdf"
    assert isinstance(audio, Audio) and audio.inline.mime == "audio/wav"
    assert isinstance(assistant, Assistant) and assistant.text == ""
    (call,) = assistant.tool_calls
    assert (call.id, call.name, call.arguments) == ("c1", "get_weather", {"city": "Paris"})
    assert call.extra_content == {"google": {"thought_signature": "sig"}}
    assert [(t.kind, t.signature, t.data) for t in assistant.thinking] == [
        ("thinking", "s1", None),
        ("redacted_thinking", None, "opaque"),
    ]
    assert assistant.reasoning == "I will call get_weather."
    assert isinstance(result, ToolResult) and result.text == "sunny"
    assert result.name == "get_weather", "a tool result knows the function it answers"
    assert conv.tool_choice == NamedTool(name="get_weather") and conv.parallel_tool_calls is False
    assert conv.json_format is not None and conv.json_format.name == "p" and conv.json_format.strict is True
    assert (conv.reasoning, conv.max_tokens, conv.temperature, conv.top_p) == ("low", 50, 0.2, 1.0)
    assert (conv.stop, conv.seed, conv.user) == (["END"], 7, "u-1")
    assert "logprobs" not in conv.given and {"tools", "seed", "user"} <= conv.given


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"messages": [{"role": "critic", "content": "x"}]}, "messages[0]", "is not one of"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]}]},
            "messages[0].content[0]",
            "data URI",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y"}}]}]},
            "messages[0].content[0]",
            "http(s) URL",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": "x"}]}]},
            "messages[0].content[0]",
            "'video_url' is not one of",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "tool_call_id"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{not json"}}],
                    }
                ]
            },
            "messages[0].tool_calls[0]",
            "not valid JSON",
        ),
        ({"tool_choice": {"type": "function", "function": {"name": "ghost"}}}, "tool_choice", "not in 'tools'"),
        ({"parallel_tool_calls": "no"}, "parallel_tool_calls", "boolean"),
        ({"temperature": "hot"}, "temperature", "number"),
        ({"seed": 1.5}, "seed", "integer"),
        ({"max_tokens": 0}, "max_tokens", "positive integer"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort", "reasoning_effort"),
        ({"messages": [{"role": "user", "content": "x", "name": 3}]}, "messages[0].name", "string"),
    ],
)
def test_what_no_provider_could_take_is_a_400_saying_where(fields: dict[str, Any], param: str, says: str) -> None:
    with pytest.raises(GatewayError) as err:
        chat.read(_body(**fields))
    assert err.value.status == 400 and err.value.param == param, (err.value.param, err.value.message)
    assert says in err.value.message


def test_a_string_content_is_one_text_part_and_an_empty_one_none() -> None:
    conv = chat.read(_body(messages=[{"role": "user", "content": "hi"}, {"role": "user", "content": ""}]))
    first, second = conv.messages
    assert isinstance(first, User) and first.parts == [Text(text="hi")]
    assert isinstance(second, User) and second.parts == []
