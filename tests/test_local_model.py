"""Tests for the built-in deterministic local model."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.models.base import (
    ChatMessage,
    Finish,
    ModelChunk,
    ModelRequest,
    TextChunk,
    ToolCall,
    ToolCallChunk,
)
from gateway.models.local import (
    ARGUMENT_FRAGMENT_CHARS,
    GREETING,
    UNPACED_BURST,
    LocalModelBackend,
    count_tokens,
    tokenize,
)


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def function_tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def request(*messages: ChatMessage, **options: Any) -> ModelRequest:
    return ModelRequest(model="local", messages=messages, **options)


async def collect(req: ModelRequest, backend: LocalModelBackend | None = None) -> list[ModelChunk]:
    return [chunk async for chunk in (backend or LocalModelBackend()).stream(req)]


def text_of(chunks: list[ModelChunk]) -> str:
    return "".join(chunk.text for chunk in chunks if isinstance(chunk, TextChunk))


def calls_of(chunks: list[ModelChunk]) -> list[tuple[str, str]]:
    """The (name, arguments) of each streamed tool call, assembled by index."""
    names: dict[int, str] = {}
    arguments: dict[int, str] = {}
    for chunk in chunks:
        if isinstance(chunk, ToolCallChunk):
            if chunk.name is not None:
                names[chunk.index] = chunk.name
            arguments[chunk.index] = arguments.get(chunk.index, "") + chunk.arguments
    return [(names[index], arguments[index]) for index in sorted(names)]


def finish_of(chunks: list[ModelChunk]) -> Finish:
    assert sum(isinstance(chunk, Finish) for chunk in chunks) == 1
    last = chunks[-1]
    assert isinstance(last, Finish)
    return last


def test_tokenize_keeps_trailing_whitespace_and_drops_leading() -> None:
    """A token is a word plus its trailing whitespace; leading whitespace is dropped."""
    assert tokenize("  hello  big\nworld ") == ["hello  ", "big\n", "world "]
    assert tokenize("") == []
    assert tokenize("   ") == []


def test_count_tokens_counts_content_and_tool_calls() -> None:
    """Prompt tokens cover content plus each tool call's name and arguments, not parts."""
    messages = [
        ChatMessage(role="system", content="be brief"),
        ChatMessage(role="user", content="hi there", parts=({"type": "image_url"},)),
        ChatMessage(
            role="assistant",
            content="",
            tool_calls=(ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}'),),
        ),
    ]
    assert count_tokens(messages) == 2 + 2 + 1 + 2
    assert LocalModelBackend().count_tokens(messages) == 7


async def test_echo_streams_one_chunk_per_token() -> None:
    """The reply echoes the last user message, one TextChunk per token."""
    chunks = await collect(request(user("first"), user("hello  there world")))
    texts = [chunk.text for chunk in chunks if isinstance(chunk, TextChunk)]
    assert texts == ["You ", "said: ", "hello  ", "there ", "world"]
    assert finish_of(chunks).reason == "stop"


async def test_finish_reports_prompt_and_completion_tokens() -> None:
    """Finish carries the prompt's token count and the number of tokens sent."""
    messages = (ChatMessage(role="system", content="you echo"), user("one two three"))
    finish = finish_of(await collect(request(*messages)))
    assert finish.prompt_tokens == 5
    assert finish.completion_tokens == len(tokenize("You said: one two three")) == 5


async def test_greeting_without_user_message() -> None:
    """With no user message the model answers with the fixed greeting."""
    chunks = await collect(request(ChatMessage(role="system", content="hi")))
    assert text_of(chunks) == GREETING
    assert finish_of(chunks).reason == "stop"


async def test_named_tool_is_called_with_fragmented_arguments() -> None:
    """A tool named in the user text is called: id and name first, then short fragments."""
    req = request(
        user('please get_weather for {"city": "Paris", "units": "metric"}'),
        tools=[function_tool("get_weather"), function_tool("get_time")],
    )
    chunks = await collect(req)
    first = chunks[0]
    assert isinstance(first, ToolCallChunk)
    assert first.index == 0
    assert first.id is not None and first.id.startswith("call_")
    assert first.name == "get_weather"
    assert first.arguments == ""
    fragments = [c for c in chunks[1:-1] if isinstance(c, ToolCallChunk)]
    assert len(fragments) > 1
    assert all(f.id is None and f.name is None for f in fragments)
    assert all(0 < len(f.arguments) <= ARGUMENT_FRAGMENT_CHARS for f in fragments)
    arguments = '{"city":"Paris","units":"metric"}'
    assert calls_of(chunks) == [("get_weather", arguments)]
    finish = finish_of(chunks)
    assert finish.reason == "tool_calls"
    assert finish.completion_tokens == 2


async def test_several_named_tools_in_order_of_first_mention() -> None:
    """Several named tools are called once each, in the order the text first names them."""
    req = request(
        user("get_time, then get_weather, then get_time again"),
        tools=[function_tool("get_weather"), function_tool("get_time"), function_tool("unused")],
    )
    chunks = await collect(req)
    assert calls_of(chunks) == [("get_time", "{}"), ("get_weather", "{}")]
    ids = [c.id for c in chunks if isinstance(c, ToolCallChunk) and c.id is not None]
    assert len(set(ids)) == 2
    assert finish_of(chunks).completion_tokens == 4


@pytest.mark.parametrize("text", ["get_weather_v2 please", "my-get_weather now", "get_weathers"])
async def test_tool_name_must_be_a_whole_word(text: str) -> None:
    """A name inside a longer word (letters, digits, _ or -) does not name the tool."""
    chunks = await collect(request(user(text), tools=[function_tool("get_weather")]))
    assert calls_of(chunks) == []
    assert text_of(chunks) == f"You said: {text}"


async def test_parallel_tool_calls_off_calls_only_the_first() -> None:
    """With parallel_tool_calls off only the first named tool is called."""
    req = request(
        user("get_time and get_weather"),
        tools=[function_tool("get_weather"), function_tool("get_time")],
        parallel_tool_calls=False,
    )
    assert calls_of(await collect(req)) == [("get_time", "{}")]


async def test_tool_choice_none_answers_with_text() -> None:
    """tool_choice "none" never calls a tool, even a named one."""
    req = request(user("get_weather"), tools=[function_tool("get_weather")], tool_choice="none")
    chunks = await collect(req)
    assert calls_of(chunks) == []
    assert text_of(chunks) == "You said: get_weather"
    assert finish_of(chunks).reason == "stop"


async def test_tool_choice_required_calls_the_first_tool() -> None:
    """tool_choice "required" with no tool named calls the first tool."""
    req = request(
        user("hello"),
        tools=[function_tool("get_weather"), function_tool("get_time")],
        tool_choice="required",
    )
    chunks = await collect(req)
    assert calls_of(chunks) == [("get_weather", "{}")]
    assert finish_of(chunks).reason == "tool_calls"


async def test_tool_choice_specific_function_calls_only_it() -> None:
    """A specific tool_choice calls that function alone, whatever the text names."""
    req = request(
        user('get_weather {"city": "Oslo"}'),
        tools=[function_tool("get_weather"), function_tool("get_time")],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert calls_of(await collect(req)) == [("get_time", '{"city":"Oslo"}')]


async def test_arguments_come_from_the_first_json_object() -> None:
    """Arguments are the first decodable JSON object in the text, serialized compactly."""
    text = 'lookup {not json} [1, 2] {"q": "café", "n": [1, 2]} {"second": true}'
    req = request(user(text), tools=[function_tool("lookup")])
    assert calls_of(await collect(req)) == [("lookup", '{"q":"café","n":[1,2]}')]


async def test_arguments_default_to_an_empty_object() -> None:
    """Without a JSON object in the text the arguments are "{}"."""
    text = "lookup {NaN} {'single': 1} {\"x\": NaN}"
    req = request(user(text), tools=[function_tool("lookup")])
    assert calls_of(await collect(req)) == [("lookup", "{}")]


async def test_answer_after_tool_outputs_includes_every_output() -> None:
    """After tool outputs the model answers with text quoting each output and calls nothing."""
    messages = (
        user("get_weather and get_time"),
        ChatMessage(
            role="assistant",
            content="",
            tool_calls=(
                ToolCall(id="call_a", name="get_weather", arguments="{}"),
                ToolCall(id="call_b", name="get_time", arguments="{}"),
            ),
        ),
        ChatMessage(role="tool", content='{"temp_c": 21}', tool_call_id="call_a"),
        ChatMessage(role="tool", content="12:00", tool_call_id="call_b"),
    )
    req = request(
        *messages,
        tools=[function_tool("get_weather"), function_tool("get_time")],
        tool_choice="required",
    )
    chunks = await collect(req)
    assert calls_of(chunks) == []
    expected = 'Tool results: get_weather returned {"temp_c": 21}; get_time returned 12:00.'
    assert text_of(chunks) == expected
    assert finish_of(chunks).reason == "stop"


async def test_max_completion_tokens_cuts_the_answer() -> None:
    """A reply longer than max_completion_tokens stops after exactly that many tokens."""
    chunks = await collect(request(user("a b c d e"), max_completion_tokens=3))
    assert [c.text for c in chunks if isinstance(c, TextChunk)] == ["You ", "said: ", "a "]
    finish = finish_of(chunks)
    assert finish.reason == "length"
    assert finish.completion_tokens == 3


async def test_max_completion_tokens_not_exceeded_stops_normally() -> None:
    """A reply exactly as long as max_completion_tokens finishes with "stop"."""
    finish = finish_of(await collect(request(user("a b"), max_completion_tokens=4)))
    assert (finish.reason, finish.completion_tokens) == ("stop", 4)


@pytest.mark.parametrize(
    "response_format",
    [{"type": "json_object"}, {"type": "json_schema", "json_schema": {"name": "reply"}}],
)
async def test_json_response_format_wraps_the_reply(response_format: dict[str, Any]) -> None:
    """A JSON response format turns the reply into {"reply": text}."""
    chunks = await collect(request(user("hi there"), response_format=response_format))
    assert json.loads(text_of(chunks)) == {"reply": "You said: hi there"}
    assert len([c for c in chunks if isinstance(c, TextChunk)]) == 5


def test_negative_delay_is_rejected() -> None:
    """A negative delay is a configuration error."""
    with pytest.raises(ValueError, match="delay_ms"):
        LocalModelBackend(delay_ms=-1)


async def test_delay_paces_chunks_and_cancel_stops_the_consumer() -> None:
    """With a delay the next chunk waits, and cancelling the consumer ends it at once."""
    backend = LocalModelBackend(delay_ms=60_000)
    received: list[ModelChunk] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for chunk in backend.stream(request(user("one two three"))):
            received.append(chunk)
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), 0.05)
    assert received == [TextChunk("You ")]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert received == [TextChunk("You ")]


async def test_zero_delay_still_lets_cancel_land_between_chunks() -> None:
    """With no delay the stream still yields to the loop every UNPACED_BURST chunks, so a
    cancel stops it mid-answer, after a whole burst."""
    received: list[ModelChunk] = []

    async def consume() -> None:
        async for chunk in LocalModelBackend().stream(request(user("word " * 100))):
            received.append(chunk)

    task = asyncio.create_task(consume())
    # Exactly two turns of the loop, not a wait: the stream runs one burst, then the cancel.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert len(received) % UNPACED_BURST == 0 and 0 < len(received) < 100
    assert not any(isinstance(chunk, Finish) for chunk in received)


async def test_fail_trigger_raises_after_two_tokens() -> None:
    """A user message with [[fail]] streams two text tokens, then raises ModelBackendError."""
    from gateway.models.base import ModelBackendError
    from gateway.models.local import FAILURE_MESSAGE

    backend = LocalModelBackend()
    request = ModelRequest(model="m", messages=[ChatMessage(role="user", content="x [[fail]]")])
    seen: list[object] = []
    with pytest.raises(ModelBackendError) as caught:
        async for chunk in backend.stream(request):
            seen.append(chunk)
    assert seen == [TextChunk("You "), TextChunk("said: ")]
    assert caught.value.message == FAILURE_MESSAGE


async def test_a_tool_is_named_by_the_words_of_its_name() -> None:
    """ "Weather in Paris?" names get_weather: a leading generic verb is not needed, any case."""
    tools = [function_tool("get_weather"), function_tool("getStockPrice")]
    chunks = await collect(request(user("Weather in Paris?"), tools=tools))
    assert calls_of(chunks) == [("get_weather", "{}")]
    chunks = await collect(request(user("the PRICE of that stock, then the weather"), tools=tools))
    assert calls_of(chunks) == [("getStockPrice", "{}"), ("get_weather", "{}")]
    chunks = await collect(request(user("stock tips please"), tools=tools))
    assert calls_of(chunks) == []


async def test_the_whole_turn_counts_until_the_assistant_answered() -> None:
    """User messages since the assistant last spoke form the turn that names tools and args."""
    tools = [function_tool("get_weather")]
    turn = [user('Weather in Paris? {"unit": "c"}'), user("In Celsius please.")]
    assert calls_of(await collect(request(*turn, tools=tools))) == [("get_weather", '{"unit":"c"}')]
    answered = [turn[0], ChatMessage(role="assistant", content="Sunny."), turn[1]]
    assert calls_of(await collect(request(*answered, tools=tools))) == []


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("getCurrentWeather", "What's the weather like in Miami today?"),
        ("get_current_weather", "What's the weather like in Boston?"),
        ("get-weather", "weather in Oslo"),
        ("MenuPlugin-get_specials", "What are the specials today?"),
        ("weather.get_forecast", "The forecast for Paris, please."),
        ("lookupRecipes", "a recipe with eggs"),  # singular names a plural
        ("get_weather", "Weather in Paris?"),
    ],
)
async def test_real_apps_tool_names_are_matched_by_what_they_are_about(
    name: str, text: str
) -> None:
    """A name is split at `_`, `-` and camelCase after a `...Plugin-` or `namespace.` prefix,
    and named by its words without a leading verb and qualifiers such as "current"."""
    chunks = await collect(request(user(text), tools=[function_tool(name)]))
    assert calls_of(chunks) == [(name, "{}")]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("getCurrentWeather", "What is the time in Miami?"),
        ("MenuPlugin-get_specials", "What is on the menu?"),
        ("get_stock_price", "The price of bread"),  # "stock" is missing
    ],
)
async def test_a_tool_not_named_is_not_called(name: str, text: str) -> None:
    chunks = await collect(request(user(text), tools=[function_tool(name)]))
    assert calls_of(chunks) == []


def described_tool(name: str, description: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description}}


@pytest.mark.parametrize(
    ("description", "text"),
    [
        ("Get the current weather in a given location", "What's the weather like in Miami today?"),
        ("Use this tool to look up the latest weather.", "Weather for Oslo?"),
        ("Provides a list of specials from the menu.", "What are the specials today?"),
        ("Returns stock prices for a ticker symbol. Use it often.", "Price of that stock?"),
        ("Gets the forecast. Weather is not included.", "Forecasts for Paris"),
    ],
)
async def test_a_tool_is_named_by_the_subject_of_its_description(
    description: str, text: str
) -> None:
    """A name that says nothing (`lookup_wx`) leaves the description: its first sentence's first
    word past verbs, articles, prepositions, qualifiers and words about tools."""
    tools = [described_tool("lookup_wx", description)]
    chunks = await collect(request(user(text), tools=tools))
    assert calls_of(chunks) == [("lookup_wx", "{}")]


@pytest.mark.parametrize(
    ("description", "text"),
    [
        ("Get the current weather in a given location", "Which location is best?"),  # not first
        ("Gets the forecast. Weather is not included.", "Weather in Paris?"),  # 2nd sentence
        ("Use this tool.", "Use a tool for this"),  # no subject at all
        ("", "hello"),
    ],
)
async def test_only_the_subject_of_a_description_names_its_tool(
    description: str, text: str
) -> None:
    chunks = await collect(request(user(text), tools=[described_tool("lookup_wx", description)]))
    assert calls_of(chunks) == []
    assert text_of(chunks) == f"You said: {text}"


async def test_described_tools_are_called_in_order_of_first_mention() -> None:
    """Names and descriptions count alike for the order of the calls."""
    tools = [
        described_tool("lookup_wx", "Current weather for a city."),
        described_tool("get_time", "Tells the local time in a city."),
        described_tool("quote", "Fetches a stock quote."),
    ]
    chunks = await collect(request(user("The time, then the weather, in Oslo"), tools=tools))
    assert calls_of(chunks) == [("get_time", "{}"), ("lookup_wx", "{}")]


async def test_hosted_tools_are_not_named_by_their_descriptions() -> None:
    """file_search and code_interpreter keep their own rules: "files" or "Python" in a message
    call neither, whatever their descriptions say."""
    tools = [
        described_tool("code_interpreter", "Run Python code in a stateful sandbox."),
        described_tool("get_weather", "Weather in a city."),
    ]
    chunks = await collect(request(user("Weather, then some Python"), tools=tools))
    assert calls_of(chunks) == [("get_weather", "{}")]
