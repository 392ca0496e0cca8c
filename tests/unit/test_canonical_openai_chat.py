"""An answer written as OpenAI's chat completion, and read back as the next request's
assistant turn: what a client sends back is what the provider gave."""

from __future__ import annotations

import json

from services.edge.canonical import chat, openai_chat
from services.edge.canonical.model import Answer, Assistant, Choice, Thinking, ToolCall
from services.edge.providers.base import Usage

TURN = Assistant(
    text="",
    tool_calls=[
        ToolCall(
            id="c1",
            name="get_weather",
            arguments={"city": "Paris"},
            extra_content={"google": {"thought_signature": "sig-1"}},
        ),
        ToolCall(id="c2", name="get_time", arguments={}, raw_arguments='{"zone": "CET"}'),
    ],
    thinking=[Thinking(kind="thinking", text="hmm", signature="s1"), Thinking(kind="redacted_thinking", data="x")],
    reasoning="hmm",
    extra_content={"google": {"thought_signature": "sig-0"}},
)


def test_a_completion_carries_every_field_of_the_turn() -> None:
    answer = Answer(id="chatcmpl-1", choices=[Choice(message=TURN, finish="tool_calls")])
    body = json.loads(openai_chat.completion(answer, "m", Usage(prompt_tokens=3, completion_tokens=4)))
    assert body["id"] == "chatcmpl-1" and body["object"] == "chat.completion" and body["model"] == "m"
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["index"] == 0 and choice["logprobs"] is None
    message = choice["message"]
    assert message["content"] is None, "no text beside tool calls is null, as OpenAI sends it"
    assert message["reasoning_content"] == "hmm"
    assert message["thinking_blocks"] == [
        {"type": "thinking", "thinking": "hmm", "signature": "s1"},
        {"type": "redacted_thinking", "data": "x"},
    ]
    first, second = message["tool_calls"]
    assert first["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert first["extra_content"] == {"google": {"thought_signature": "sig-1"}}
    assert second["function"]["arguments"] == '{"zone": "CET"}', "arguments a provider wrote are kept as written"
    assert body["usage"]["total_tokens"] == 7


def test_an_empty_answer_is_empty_text_not_null() -> None:
    assert openai_chat.message(Assistant())["content"] == ""


def test_the_turn_sent_back_reads_as_it_was_given() -> None:
    sent = openai_chat.message(TURN)
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}, sent]}
    _, back = chat.read(body).messages
    assert isinstance(back, Assistant)
    assert back.thinking == TURN.thinking and back.reasoning == TURN.reasoning
    assert back.extra_content == TURN.extra_content
    assert [(c.id, c.name, c.arguments, c.extra_content) for c in back.tool_calls] == [
        ("c1", "get_weather", {"city": "Paris"}, {"google": {"thought_signature": "sig-1"}}),
        ("c2", "get_time", {"zone": "CET"}, None),
    ]
