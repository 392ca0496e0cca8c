"""The conformance matrix of the other inbound APIs: the Responses API (driven by the official
``openai`` SDK) and Anthropic's Messages API (driven by the official ``anthropic`` SDK), per
provider and mode. A cell that cannot pass says why in ``NOT_APPLICABLE``; docs/compatibility.md
shows this matrix beside the chat one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
from openai import OpenAI
from pydantic import BaseModel

from tests.conformance.matrix import MODES

# provider -> the model the cells call it with (all answered by the simulators)
PROVIDERS: dict[str, str] = {
    "openai": "gpt-4.1",
    "mistral": "mistral-large-latest",
    "anthropic": "claude-sonnet-4-6",
    "gemini": "gemini-2.5-flash",
}
# How each API reaches each provider.
PATH = {
    ("responses", "openai"): "passed through to OpenAI's Responses API",
    ("messages", "anthropic"): "passed through to Anthropic",
}

WEATHER_PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@dataclass
class Ctx:
    openai: OpenAI
    anthropic: anthropic.Anthropic
    provider: str
    model: str
    stream: bool


@dataclass
class Feature:
    api: str  # responses | messages
    name: str
    title: str
    check: Callable[[Ctx], None]
    modes: tuple[str, ...] = MODES


# --- the Responses API --------------------------------------------------------------------


def respond(ctx: Ctx, **kwargs: Any) -> Any:
    """A response object, streamed (and assembled by the SDK) or not."""
    kwargs.setdefault("model", ctx.model)
    if not ctx.stream:
        return ctx.openai.responses.create(**kwargs)
    with ctx.openai.responses.stream(**kwargs) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] in ("response.completed", "response.incomplete")
    return final


def r_text(ctx: Ctx) -> None:
    resp = respond(ctx, instructions="Be brief.", input="hello there")
    assert resp.status == "completed" and resp.output_text.startswith("Reply 0 to: hello there")
    assert "[system: Be brief.]" in resp.output_text
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0


def r_tools(ctx: Ctx) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER_PARAMS}
    first = respond(ctx, input="Weather in Paris?", tools=[tool])
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments)["city"] == "Paris"
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
    second = respond(ctx, previous_response_id=first.id, input=[result], tools=[tool])
    assert "sunny" in second.output_text


class Forecast(BaseModel):
    city: str
    celsius: int


def r_structured(ctx: Ctx) -> None:
    if ctx.stream:
        with ctx.openai.responses.stream(model=ctx.model, input="Oslo", text_format=Forecast) as stream:
            parsed = stream.get_final_response().output_parsed
    else:
        parsed = ctx.openai.responses.parse(model=ctx.model, input="Oslo", text_format=Forecast).output_parsed
    assert isinstance(parsed, Forecast)


def r_reasoning(ctx: Ctx) -> None:
    resp = respond(ctx, input="think", reasoning={"effort": "low", "summary": "auto"}, max_output_tokens=4096)
    reasoning = [item for item in resp.output if item.type == "reasoning"]
    assert reasoning and reasoning[0].summary and reasoning[0].summary[0].text.startswith("Thinking about")
    assert resp.usage.output_tokens_details.reasoning_tokens > 0 or ctx.provider == "gemini"


def r_errors(ctx: Ctx) -> None:
    for status, exc in ((400, openai.BadRequestError), (429, openai.RateLimitError), (500, openai.APIStatusError)):
        try:
            # A model name of this API's own: a 429 cools the key down for the model it names.
            respond(ctx, model=f"{ctx.model}-responses-status-{status}", input="x")
        except exc as err:
            assert err.status_code == (502 if status == 500 else status)
        else:
            raise AssertionError(f"HTTP {status} from the provider was not an error")


# --- Anthropic's Messages API -------------------------------------------------------------


def message(ctx: Ctx, **kwargs: Any) -> Any:
    kwargs.setdefault("model", ctx.model)
    kwargs.setdefault("max_tokens", 2048)
    if not ctx.stream:
        return ctx.anthropic.messages.create(**kwargs)
    with ctx.anthropic.messages.stream(**kwargs) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    return final


def m_text(ctx: Ctx) -> None:
    msg = message(ctx, system="Be brief.", messages=[{"role": "user", "content": "hello there"}])
    text = "".join(block.text for block in msg.content if block.type == "text")
    assert msg.stop_reason == "end_turn" and text.startswith("Reply 0 to: hello there")
    assert "[system: Be brief.]" in text and msg.usage.output_tokens > 0


def m_tools(ctx: Ctx) -> None:
    tool = {"name": "get_weather", "input_schema": WEATHER_PARAMS}
    question = {"role": "user", "content": "Weather in Paris?"}
    first = message(ctx, tools=[tool], messages=[question])
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.input["city"] == "Paris"
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}
    assistant = {"role": "assistant", "content": [block.model_dump() for block in first.content]}
    second = message(ctx, tools=[tool], messages=[question, assistant, result])
    assert "sunny" in "".join(block.text for block in second.content if block.type == "text")


def m_thinking(ctx: Ctx) -> None:
    """Thinking with a tool call, handed back on the next turn (the provider checks it)."""
    tool = {"name": "get_weather", "input_schema": WEATHER_PARAMS}
    thinking = {"type": "enabled", "budget_tokens": 1024}
    question = {"role": "user", "content": "Weather in Paris?"}
    first = message(ctx, tools=[tool], thinking=thinking, messages=[question])
    assert [block.type for block in first.content] == ["thinking", "tool_use"]
    call = first.content[1]
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}
    assistant = {"role": "assistant", "content": [block.model_dump() for block in first.content]}
    second = message(ctx, tools=[tool], thinking=thinking, messages=[question, assistant, result])
    assert "sunny" in "".join(block.text for block in second.content if block.type == "text")


def m_errors(ctx: Ctx) -> None:
    cases = ((400, anthropic.BadRequestError), (429, anthropic.RateLimitError), (500, anthropic.APIStatusError))
    for status, exc in cases:
        try:
            model = f"{ctx.model}-messages-status-{status}"
            message(ctx, model=model, messages=[{"role": "user", "content": "x"}])
        except exc as err:
            assert err.status_code == (502 if status == 500 else status)
            assert isinstance(err.body, dict) and err.body["type"] == "error"  # Anthropic's shape
        else:
            raise AssertionError(f"HTTP {status} from the provider was not an error")


FEATURES = [
    Feature("responses", "r_text", "Text, instructions, usage", r_text),
    Feature("responses", "r_tools", "Function call, then its output via previous_response_id", r_tools),
    Feature("responses", "r_structured", "text.format json_schema (responses.parse)", r_structured),
    Feature("responses", "r_reasoning", "reasoning effort and summary, reasoning item", r_reasoning),
    Feature("responses", "r_errors", "Provider errors as OpenAI errors", r_errors, ("non-stream",)),
    Feature("messages", "m_text", "Text, system, usage, stop_reason end_turn", m_text),
    Feature("messages", "m_tools", "tool_use (stop_reason tool_use), tool_result round trip", m_tools),
    Feature("messages", "m_thinking", "Thinking with a tool call, handed back (signatures)", m_thinking),
    Feature("messages", "m_errors", "Provider errors in Anthropic's shape", m_errors, ("non-stream",)),
]

_OPENAI_HIDES = "OpenAI-format chat models keep their reasoning to themselves: there is no reasoning text to return"
NOT_APPLICABLE: dict[tuple[str, str], str] = {
    ("mistral", "r_reasoning"): _OPENAI_HIDES,
    ("openai", "m_thinking"): _OPENAI_HIDES,
    ("mistral", "m_thinking"): _OPENAI_HIDES,
}


def cells() -> list[tuple[str, str, str]]:
    return [(p, f.name, m) for p in PROVIDERS for f in FEATURES for m in f.modes]
