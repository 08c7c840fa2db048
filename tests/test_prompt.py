"""The chat history a run's model request is built from (gateway/engine/prompt.py): order, the
system message, tool rounds, truncation by `last_messages` and by `max_prompt_tokens`."""

from __future__ import annotations

import json
from typing import Any, Unpack

import pytest

from gateway import objects
from gateway.bodies import RunSettings
from gateway.engine.prompt import PromptTooLongError, build_request, thread_message, tool_round
from gateway.models.base import ChatMessage, ToolCall
from gateway.models.local import LocalModelBackend
from gateway.wire import Message, Run, Step

# Counts a token per whitespace-separated word of a message's content, and the words of each
# tool call's name and arguments (see gateway/models/local.py).
BACKEND = LocalModelBackend()
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}


def a_run(**fields: Unpack[RunSettings]) -> Run:
    assistant = objects.assistant({"model": "m"})
    thread = objects.thread({})
    return objects.run(
        thread_id=thread["id"], assistant=assistant, fields=fields, expiry_seconds=600
    )


def said(run: Run, *texts: str, role: str = "user") -> list[Message]:
    return [objects.user_message(run["thread_id"], {"role": role, "content": t}) for t in texts]


def answered(run: Run, *calls: tuple[str, str, str, str | None], status: str = "completed") -> Step:
    """A tool_calls step of `run` with (id, name, arguments, output) function calls."""
    step = objects.step(
        run,
        {
            "type": "tool_calls",
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments, "output": output},
                }
                for call_id, name, arguments, output in calls
            ],
        },
    )
    step["status"] = status
    return step


def contents(messages: Any) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in messages]


def test_empty_thread_without_instructions_is_an_empty_history() -> None:
    """A run on an empty thread with no instructions asks the model with no messages at all."""
    request = build_request(a_run(), [], [], BACKEND)
    assert list(request.messages) == []
    assert request.model == "m"


def test_instructions_are_one_system_message_first() -> None:
    """The run's instructions (with additional_instructions) open the history as a system
    message, before the thread's messages."""
    run = a_run(instructions="Be brief.", additional_instructions="Answer in French.")
    request = build_request(run, said(run, "hi"), [], BACKEND)
    assert contents(request.messages) == [
        ("system", "Be brief.\n\nAnswer in French."),
        ("user", "hi"),
    ]


def test_empty_instructions_give_no_system_message() -> None:
    """Instructions that are the empty string add no system message."""
    run = a_run(instructions="")
    request = build_request(run, said(run, "hi"), [], BACKEND)
    assert contents(request.messages) == [("user", "hi")]


def test_thread_messages_keep_their_order_and_roles() -> None:
    """Thread messages appear in the order given, users as user and assistants as assistant."""
    run = a_run()
    messages = [*said(run, "one"), *said(run, "two", role="assistant"), *said(run, "three")]
    request = build_request(run, messages, [], BACKEND)
    assert contents(request.messages) == [("user", "one"), ("assistant", "two"), ("user", "three")]


def test_text_parts_are_joined_by_newlines_and_other_parts_kept() -> None:
    """A message's text parts become one content joined by newlines; its other parts (images)
    are passed through as they are stored, in order."""
    run = a_run()
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    content: list[dict[str, Any]] = [
        {"type": "text", "text": "look"},
        image,
        {"type": "text", "text": "at this"},
    ]
    message = objects.user_message(run["thread_id"], {"role": "user", "content": content})
    assert thread_message(message) == ChatMessage(
        role="user", content="look\nat this", parts=(image,)
    )


def test_assistant_message_without_text_has_empty_content() -> None:
    """An assistant message with no content parts (still being written) is an empty assistant
    message, not dropped."""
    run = a_run()
    assert thread_message(objects.assistant_message(run)) == ChatMessage(
        role="assistant", content=""
    )


def test_tool_round_is_the_calls_then_one_output_per_call_in_order() -> None:
    """An answered tool_calls step becomes an assistant message carrying every call, followed
    by one tool message per call, in call order, each naming the call it answers."""
    run = a_run()
    step = answered(
        run,
        ("call_a", "get_weather", '{"city": "Paris"}', "sunny"),
        ("call_b", "get_time", "{}", "noon"),
    )
    assert tool_round(step) == [
        ChatMessage(
            role="assistant",
            content="",
            tool_calls=(
                ToolCall("call_a", "get_weather", '{"city": "Paris"}'),
                ToolCall("call_b", "get_time", "{}"),
            ),
        ),
        ChatMessage(role="tool", content="sunny", tool_call_id="call_a"),
        ChatMessage(role="tool", content="noon", tool_call_id="call_b"),
    ]


def test_missing_tool_output_is_an_empty_tool_message() -> None:
    """A call whose output is null is answered by a tool message with empty content."""
    run = a_run()
    step = answered(run, ("call_a", "get_weather", "{}", None))
    assert tool_round(step)[1] == ChatMessage(role="tool", content="", tool_call_id="call_a")


def test_a_code_interpreter_call_is_its_code_and_its_output() -> None:
    """A code_interpreter call takes part in the round as a call of its function with the
    code, answered by its logs and a note of each image it showed."""
    run = a_run()
    step = answered(run, ("call_a", "get_weather", "{}", "sunny"))
    outputs = [
        {"type": "logs", "logs": "4\n"},
        {"type": "image", "image": {"file_id": "file-img"}},
    ]
    step["step_details"]["tool_calls"].insert(
        0,
        {
            "id": "call_ci",
            "type": "code_interpreter",
            "code_interpreter": {"input": "print(2+2)", "outputs": outputs},
        },
    )
    round_ = tool_round(step)
    (ci, weather) = round_[0].tool_calls
    assert (ci.id, ci.name, json.loads(ci.arguments)) == (
        "call_ci",
        "code_interpreter",
        {"code": "print(2+2)"},
    )
    assert weather.id == "call_a"
    assert round_[1].tool_call_id == "call_ci"
    assert round_[1].content == "4\n\n[an image was shown to the user: file-img]"
    assert round_[2] == ChatMessage(role="tool", content="sunny", tool_call_id="call_a")


def test_rounds_follow_the_thread_history_in_step_order() -> None:
    """The run's answered tool rounds come after the system message and thread messages, one
    round per completed tool_calls step, in the order of the steps."""
    run = a_run(instructions="sys")
    steps = [
        answered(run, ("call_1", "first", "{}", "r1")),
        answered(run, ("call_2", "second", "{}", "r2")),
    ]
    request = build_request(run, said(run, "q"), steps, BACKEND)
    assert [(m.role, m.tool_call_id) for m in request.messages] == [
        ("system", None),
        ("user", None),
        ("assistant", None),
        ("tool", "call_1"),
        ("assistant", None),
        ("tool", "call_2"),
    ]
    assert request.messages[2].tool_calls == (ToolCall("call_1", "first", "{}"),)
    assert request.messages[4].tool_calls == (ToolCall("call_2", "second", "{}"),)


@pytest.mark.parametrize("status", ["in_progress", "cancelled", "failed", "expired"])
def test_only_completed_tool_steps_take_part(status: str) -> None:
    """A tool_calls step that is not completed (still waiting for outputs, or ended otherwise)
    adds nothing to the history."""
    run = a_run()
    step = answered(run, ("call_1", "f", "{}", None), status=status)
    request = build_request(run, said(run, "q"), [step], BACKEND)
    assert contents(request.messages) == [("user", "q")]


def test_message_creation_steps_add_nothing() -> None:
    """A completed message_creation step adds no message: the message it wrote is a thread
    message already."""
    run = a_run()
    step = objects.step(run, {"type": "message_creation", "message_creation": {"message_id": "m"}})
    step["status"] = "completed"
    request = build_request(run, said(run, "q"), [step], BACKEND)
    assert contents(request.messages) == [("user", "q")]


def test_last_messages_keeps_only_the_newest_thread_messages() -> None:
    """truncation_strategy last_messages=N keeps the N newest thread messages; the system
    message and the tool rounds are kept whole."""
    run = a_run(
        instructions="sys", truncation_strategy={"type": "last_messages", "last_messages": 2}
    )
    step = answered(run, ("call_1", "f", "{}", "out"))
    request = build_request(run, said(run, "m1", "m2", "m3", "m4"), [step], BACKEND)
    assert contents(request.messages) == [
        ("system", "sys"),
        ("user", "m3"),
        ("user", "m4"),
        ("assistant", ""),
        ("tool", "out"),
    ]


def test_last_messages_beyond_the_thread_keeps_everything() -> None:
    """last_messages larger than the thread keeps every thread message."""
    run = a_run(truncation_strategy={"type": "last_messages", "last_messages": 10})
    request = build_request(run, said(run, "m1", "m2"), [], BACKEND)
    assert contents(request.messages) == [("user", "m1"), ("user", "m2")]


def test_last_messages_without_a_number_keeps_everything() -> None:
    """type last_messages with last_messages null truncates nothing."""
    run = a_run(truncation_strategy={"type": "last_messages"})
    assert run["truncation_strategy"] == {"type": "last_messages", "last_messages": None}
    request = build_request(run, said(run, "m1", "m2", "m3"), [], BACKEND)
    assert len(request.messages) == 3


def test_auto_without_a_token_limit_keeps_everything() -> None:
    """truncation auto (the default) drops nothing when the run has no max_prompt_tokens."""
    run = a_run()
    assert run["truncation_strategy"] == {"type": "auto", "last_messages": None}
    request = build_request(run, said(run, *(f"message {i}" for i in range(50))), [], BACKEND)
    assert len(request.messages) == 50


def test_token_limit_drops_the_oldest_thread_messages_until_it_fits() -> None:
    """Over max_prompt_tokens, the oldest thread messages are dropped one by one until the
    prompt fits; the system message and tool rounds are never dropped."""
    # system 1 token, messages 2 tokens each, the round 1 (name) + 1 (arguments) + 1 (output).
    run = a_run(instructions="sys", max_prompt_tokens=8)
    step = answered(run, ("call_1", "f", "{}", "out"))
    messages = said(run, "a a", "b b", "c c", "d d")
    request = build_request(run, messages, [step], BACKEND)
    assert BACKEND.count_tokens(request.messages) == 8
    assert contents(request.messages) == [
        ("system", "sys"),
        ("user", "c c"),
        ("user", "d d"),
        ("assistant", ""),
        ("tool", "out"),
    ]


def test_token_limit_exactly_met_drops_nothing() -> None:
    """A prompt of exactly max_prompt_tokens tokens is kept whole."""
    run = a_run(max_prompt_tokens=4)
    request = build_request(run, said(run, "a a", "b b"), [], BACKEND)
    assert contents(request.messages) == [("user", "a a"), ("user", "b b")]


def test_token_limit_applies_after_last_messages() -> None:
    """last_messages cuts first, then max_prompt_tokens drops more of what is left."""
    run = a_run(
        max_prompt_tokens=2,
        truncation_strategy={"type": "last_messages", "last_messages": 3},
    )
    request = build_request(run, said(run, "a", "b", "c", "d"), [], BACKEND)
    assert contents(request.messages) == [("user", "c"), ("user", "d")]


def test_newest_message_alone_over_the_limit_is_too_long() -> None:
    """The newest thread message is never dropped: when it alone (with the system message and
    rounds) is over max_prompt_tokens, the prompt is too long."""
    run = a_run(max_prompt_tokens=2)
    with pytest.raises(PromptTooLongError):
        build_request(run, said(run, "a", "three words here"), [], BACKEND)


def test_instructions_over_the_limit_on_an_empty_thread_are_too_long() -> None:
    """With no thread message to drop, instructions over max_prompt_tokens are too long."""
    run = a_run(instructions="far too many words", max_prompt_tokens=3)
    with pytest.raises(PromptTooLongError):
        build_request(run, [], [], BACKEND)


def test_tool_rounds_over_the_limit_are_too_long() -> None:
    """Tool rounds are never dropped, so rounds over max_prompt_tokens make the prompt too
    long even after the thread is cut to its newest message."""
    run = a_run(max_prompt_tokens=3)
    step = answered(run, ("call_1", "f", "{}", "a long tool output"))
    with pytest.raises(PromptTooLongError):
        build_request(run, said(run, "q"), [step], BACKEND)


def test_hosted_tools_are_offered_as_functions() -> None:
    """The run's functions come first, then a function for each hosted tool it declares (in a
    fixed order), with the run's tool_choice."""
    run = a_run(
        tools=[{"type": "code_interpreter"}, WEATHER, {"type": "file_search"}],
        tool_choice="required",
    )
    request = build_request(run, said(run, "q"), [], BACKEND)
    names = [t["function"]["name"] for t in request.tools]
    assert names == ["get_weather", "file_search", "code_interpreter"]
    assert request.tools[0] == WEATHER
    assert request.tool_choice == "required"


def test_a_function_keeps_its_name_over_a_hosted_tool() -> None:
    """A run's own function named file_search is offered as declared, and no hosted function
    of that name beside it; a tool_choice naming the hosted tool then lets the model choose."""
    own = {"type": "function", "function": {"name": "file_search", "parameters": {}}}
    run = a_run(tools=[own, {"type": "file_search"}], tool_choice={"type": "file_search"})
    request = build_request(run, said(run, "q"), [], BACKEND)
    assert list(request.tools) == [own]
    assert request.tool_choice == "auto"


def test_a_named_hosted_tool_choice_names_its_function() -> None:
    run = a_run(tools=[{"type": "code_interpreter"}], tool_choice={"type": "code_interpreter"})
    request = build_request(run, said(run, "q"), [], BACKEND)
    assert request.tool_choice == {"type": "function", "function": {"name": "code_interpreter"}}


def test_without_tools_tool_choice_is_none() -> None:
    """With no tool to call, tool_choice is "none" whatever the run asked."""
    run = a_run(tools=[], tool_choice="required")
    request = build_request(run, said(run, "q"), [], BACKEND)
    assert list(request.tools) == []
    assert request.tool_choice == "none"


def test_request_carries_the_runs_settings() -> None:
    """Model, sampling, response format, parallel calls and the completion limit come from the
    run as it is."""
    run = a_run(
        model="other",
        temperature=0.2,
        top_p=0.5,
        response_format={"type": "json_object"},
        parallel_tool_calls=False,
        max_completion_tokens=7,
    )
    request = build_request(run, said(run, "q"), [], BACKEND)
    assert (
        request.model,
        request.temperature,
        request.top_p,
        request.response_format,
        request.parallel_tool_calls,
        request.max_completion_tokens,
    ) == ("other", 0.2, 0.5, {"type": "json_object"}, False, 7)


@pytest.mark.xfail(
    strict=True,
    reason="prompt.py puts every thread message before every tool round: an assistant message "
    "the run wrote between two tool rounds is shown before the first round's calls",
)
def test_run_text_between_tool_rounds_keeps_its_place() -> None:
    """Text the run wrote after its first tool round (before calling again) comes after that
    round in the history, as it happened."""
    run = a_run()
    first = answered(run, ("call_1", "first", "{}", "r1"))
    text_step = objects.step(
        run, {"type": "message_creation", "message_creation": {"message_id": "x"}}
    )
    text_step["status"] = "completed"
    # What the runner saves in segment 2: the text message (before its calls), then the calls.
    between = objects.assistant_message(run)
    between["id"] = text_step["step_details"]["message_creation"]["message_id"]
    between["content"] = [objects.text_part("Now the second.")]
    between["status"] = "completed"
    second = answered(run, ("call_2", "second", "{}", "r2"))
    request = build_request(run, [*said(run, "q"), between], [first, text_step, second], BACKEND)
    assert [(m.role, m.content, m.tool_call_id) for m in request.messages] == [
        ("user", "q", None),
        ("assistant", "", None),
        ("tool", "r1", "call_1"),
        ("assistant", "Now the second.", None),
        ("assistant", "", None),
        ("tool", "r2", "call_2"),
    ]
