"""Request-body models: what each accepts, what it rejects, and how the rejection reads."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from gateway.api.requests import (
    ChatCompletionRequest,
    CreateAssistantRequest,
    CreateMessageRequest,
    CreateRunRequest,
    CreateThreadAndRunRequest,
    CreateThreadRequest,
    ModifyAssistantRequest,
    ModifyMessageRequest,
    ModifyRunRequest,
    ModifyThreadRequest,
    SubmitToolOutputsRunRequest,
    ToolOutput,
)
from gateway.api.validation import validation_error_param

FUNCTION_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}
FILE_SEARCH_TOOL = {
    "type": "file_search",
    "file_search": {
        "max_num_results": 50,
        "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.5},
    },
}
JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "description": "The answer.",
        "schema": {"type": "object"},
        "strict": True,
    },
}
MESSAGE = {
    "role": "user",
    "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_file", "image_file": {"file_id": "file-1", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
    ],
    "attachments": [
        {"file_id": "file-2", "tools": [{"type": "code_interpreter"}, {"type": "file_search"}]}
    ],
    "metadata": {"source": "test"},
}
HELPER_RESOURCES = {
    "code_interpreter": {"file_ids": ["file-1"]},
    "file_search": {
        "vector_stores": [
            {
                "file_ids": ["file-2"],
                "chunking_strategy": {
                    "type": "static",
                    "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400},
                },
                "metadata": {"k": "v"},
            }
        ]
    },
}
RESOURCES = {
    "code_interpreter": {"file_ids": ["file-1"]},
    "file_search": {"vector_store_ids": ["vs_1"]},
}
RUN_FIELDS: dict[str, Any] = {
    "assistant_id": "asst_1",
    "model": "gpt-4o",
    "instructions": "Be brief.",
    "tools": [{"type": "code_interpreter"}, FILE_SEARCH_TOOL, FUNCTION_TOOL],
    "metadata": {"k": "v"},
    "temperature": 0.5,
    "top_p": 1,
    "stream": False,
    "max_prompt_tokens": 1000,
    "max_completion_tokens": 256,
    "truncation_strategy": {"type": "last_messages", "last_messages": 10},
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "response_format": JSON_SCHEMA_FORMAT,
}

MINIMAL: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (CreateAssistantRequest, {"model": "gpt-4o"}),
    (ModifyAssistantRequest, {}),
    (CreateThreadRequest, {}),
    (ModifyThreadRequest, {}),
    (CreateMessageRequest, {"role": "user", "content": "hi"}),
    (ModifyMessageRequest, {}),
    (CreateRunRequest, {"assistant_id": "asst_1"}),
    (CreateThreadAndRunRequest, {"assistant_id": "asst_1"}),
    (ModifyRunRequest, {}),
    (SubmitToolOutputsRunRequest, {"tool_outputs": []}),
    (ToolOutput, {"tool_call_id": "call_1", "output": "42"}),
]

FULL: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (
        CreateAssistantRequest,
        {
            "model": "gpt-4o",
            "name": "n",
            "description": "d",
            "instructions": "i",
            "reasoning_effort": "xhigh",
            "tools": [{"type": "code_interpreter"}, FILE_SEARCH_TOOL, FUNCTION_TOOL],
            "tool_resources": HELPER_RESOURCES,
            "metadata": {"k": "v"},
            "temperature": 2,
            "top_p": 0,
            "response_format": {"type": "json_object"},
        },
    ),
    (
        ModifyAssistantRequest,
        {
            "model": "gpt-4o-mini",
            "name": "n",
            "tools": [],
            "tool_resources": RESOURCES,
            "response_format": "auto",
        },
    ),
    (
        CreateThreadRequest,
        {"messages": [MESSAGE], "tool_resources": HELPER_RESOURCES, "metadata": {"k": "v"}},
    ),
    (ModifyThreadRequest, {"tool_resources": RESOURCES, "metadata": {"k": "v"}}),
    (CreateMessageRequest, MESSAGE),
    (ModifyMessageRequest, {"metadata": {"k": "v"}}),
    (
        CreateRunRequest,
        {
            **RUN_FIELDS,
            "reasoning_effort": "low",
            "additional_instructions": "Also be kind.",
            "additional_messages": [MESSAGE, {"role": "assistant", "content": "Sure."}],
        },
    ),
    (
        CreateThreadAndRunRequest,
        {
            **RUN_FIELDS,
            "thread": {"messages": [MESSAGE], "tool_resources": HELPER_RESOURCES},
            "tool_resources": RESOURCES,
        },
    ),
    (ModifyRunRequest, {"metadata": {"k": "v"}}),
    (
        SubmitToolOutputsRunRequest,
        {"tool_outputs": [{"tool_call_id": "call_1", "output": "42"}], "stream": True},
    ),
]


def error_of(model: type[BaseModel], body: object) -> tuple[str, str | None]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    return validation_error_param(info.value)


@pytest.mark.parametrize(("model", "body"), MINIMAL + FULL)
def test_valid_body_round_trips(model: type[BaseModel], body: dict[str, Any]) -> None:
    """A valid body validates and dumps back to the same JSON, numbers compared by value."""
    dumped = model.model_validate(body).model_dump(exclude_unset=True, by_alias=True)
    assert dumped == body


def test_explicit_null_means_not_set() -> None:
    """Nulls on optional fields validate and are left out of the dump, nested ones too."""
    body = {
        "assistant_id": "asst_1",
        "model": None,
        "tools": [{"type": "function", "function": {"name": "f", "strict": None}}],
        "tool_choice": None,
        "parallel_tool_calls": None,
    }
    dumped = CreateRunRequest.model_validate(body).model_dump(exclude_unset=True, by_alias=True)
    assert dumped == {
        "assistant_id": "asst_1",
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }


def test_required_field_rejects_null() -> None:
    """Null is not a value for a required field."""
    assert error_of(CreateAssistantRequest, {"model": None}) == (
        "Invalid type for 'model': expected a string, but got null instead.",
        "model",
    )


def test_missing_required_field() -> None:
    """A missing required field is named in OpenAI's words."""
    assert error_of(CreateRunRequest, {}) == (
        "Missing required parameter: 'assistant_id'.",
        "assistant_id",
    )


def test_missing_nested_required_field() -> None:
    """A missing nested field is named by its full path."""
    body = {"tool_outputs": [{"tool_call_id": "call_1"}]}
    assert error_of(SubmitToolOutputsRunRequest, body) == (
        "Missing required parameter: 'tool_outputs[0].output'.",
        "tool_outputs[0].output",
    )


def test_unknown_field() -> None:
    """An unknown top-level field is reported as an unrecognized argument."""
    assert error_of(CreateAssistantRequest, {"model": "m", "colour": "red"}) == (
        "Unrecognized request argument supplied: colour",
        "colour",
    )


def test_unknown_nested_field() -> None:
    """An unknown nested field is reported with its full path."""
    body = {"model": "m", "tools": [{"type": "function", "function": {"name": "f", "x": 1}}]}
    assert error_of(CreateAssistantRequest, body) == (
        "Unrecognized request argument supplied: tools[0].function.x",
        "tools[0].function.x",
    )


@pytest.mark.parametrize(
    ("model", "body", "param"),
    [
        (CreateRunRequest, {"assistant_id": "a", "tool_resources": {}}, "tool_resources"),
        (
            CreateThreadAndRunRequest,
            {"assistant_id": "a", "reasoning_effort": "low"},
            "reasoning_effort",
        ),
        (
            CreateThreadAndRunRequest,
            {"assistant_id": "a", "additional_instructions": "x"},
            "additional_instructions",
        ),
        (
            CreateThreadAndRunRequest,
            {"assistant_id": "a", "additional_messages": []},
            "additional_messages",
        ),
        (ModifyMessageRequest, {"content": "x"}, "content"),
        (ModifyRunRequest, {"status": "cancelled"}, "status"),
        (ModifyThreadRequest, {"messages": []}, "messages"),
        (
            ModifyAssistantRequest,
            {"tool_resources": HELPER_RESOURCES},
            "tool_resources.file_search.vector_stores",
        ),
        (
            CreateThreadAndRunRequest,
            {"assistant_id": "a", "tool_resources": HELPER_RESOURCES},
            "tool_resources.file_search.vector_stores",
        ),
    ],
)
def test_field_not_allowed_here(model: type[BaseModel], body: dict[str, Any], param: str) -> None:
    """Each body accepts only the fields its endpoint takes."""
    assert error_of(model, body) == (f"Unrecognized request argument supplied: {param}", param)


@pytest.mark.parametrize(
    ("model", "body", "param", "expected", "got"),
    [
        (
            CreateAssistantRequest,
            {"model": "m", "temperature": "1"},
            "temperature",
            "a number",
            "a string",
        ),
        (CreateAssistantRequest, {"model": "m", "top_p": True}, "top_p", "a number", "a boolean"),
        (CreateAssistantRequest, {"model": 1}, "model", "a string", "an integer"),
        (
            CreateRunRequest,
            {"assistant_id": "a", "max_prompt_tokens": "300"},
            "max_prompt_tokens",
            "an integer",
            "a string",
        ),
        (
            CreateRunRequest,
            {"assistant_id": "a", "max_prompt_tokens": 300.5},
            "max_prompt_tokens",
            "an integer",
            "a number",
        ),
        (
            CreateRunRequest,
            {"assistant_id": "a", "max_prompt_tokens": True},
            "max_prompt_tokens",
            "an integer",
            "a boolean",
        ),
        (
            CreateRunRequest,
            {"assistant_id": "a", "stream": "true"},
            "stream",
            "a boolean",
            "a string",
        ),
        (CreateRunRequest, {"assistant_id": "a", "tools": {}}, "tools", "an array", "an object"),
        (
            CreateRunRequest,
            {"assistant_id": "a", "tools": [5]},
            "tools[0]",
            "an object",
            "an integer",
        ),
        (ModifyRunRequest, {"metadata": []}, "metadata", "an object", "an array"),
        (ModifyRunRequest, {"metadata": {"k": 1}}, "metadata.k", "a string", "an integer"),
    ],
)
def test_wrong_type(
    model: type[BaseModel], body: dict[str, Any], param: str, expected: str, got: str
) -> None:
    """Values of the wrong JSON type are rejected, not coerced."""
    message = f"Invalid type for '{param}': expected {expected}, but got {got} instead."
    assert error_of(model, body) == (message, param)


def test_int_accepted_for_number() -> None:
    """An integer is a valid JSON number for temperature and top_p."""
    body = CreateAssistantRequest.model_validate({"model": "m", "temperature": 1, "top_p": 0})
    assert (body.temperature, body.top_p) == (1, 0)


def test_body_not_an_object() -> None:
    """A body that is not a JSON object has no param."""
    assert error_of(CreateThreadRequest, [1]) == (
        "Invalid type for the request body: expected an object, but got an array instead.",
        None,
    )


@pytest.mark.parametrize(
    ("metadata", "detail"),
    [
        ({f"k{i}": "v" for i in range(17)}, "too many pairs"),
        ({"k" * 65: "v"}, "key too long"),
        ({"k": "v" * 513}, "value too long"),
    ],
)
def test_metadata_limits(metadata: dict[str, str], detail: str) -> None:
    """Metadata over its limits is rejected with param `metadata`."""
    message, param = error_of(ModifyThreadRequest, {"metadata": metadata})
    assert param == "metadata"
    assert message.startswith(f"Invalid 'metadata': {detail}.")


def test_metadata_at_limits() -> None:
    """16 pairs with 64-char keys and 512-char values are accepted."""
    metadata = {f"{i:02d}".ljust(64, "k"): "v" * 512 for i in range(16)}
    assert ModifyMessageRequest.model_validate({"metadata": metadata}).metadata == metadata


@pytest.mark.parametrize(
    ("field", "ok", "bad", "message"),
    [
        ("temperature", 2, 2.1, "number above maximum value. Expected a value <= 2, but got 2.1"),
        ("temperature", 0, -0.1, "number below minimum value. Expected a value >= 0, but got -0.1"),
        ("top_p", 1, 1.5, "number above maximum value. Expected a value <= 1, but got 1.5"),
        (
            "max_completion_tokens",
            256,
            255,
            "integer below minimum value. Expected a value >= 256, but got 255",
        ),
        (
            "max_prompt_tokens",
            256,
            0,
            "integer below minimum value. Expected a value >= 256, but got 0",
        ),
    ],
)
def test_numeric_edges(field: str, ok: float, bad: float, message: str) -> None:
    """Numbers at a limit pass and just past it fail, naming the field."""
    CreateRunRequest.model_validate({"assistant_id": "a", field: ok})
    assert error_of(CreateRunRequest, {"assistant_id": "a", field: bad}) == (
        f"Invalid '{field}': {message} instead.",
        field,
    )


@pytest.mark.parametrize(
    ("field", "limit"), [("name", 256), ("description", 512), ("instructions", 256_000)]
)
def test_string_lengths(field: str, limit: int) -> None:
    """Assistant strings accept their maximum length and reject one more."""
    CreateAssistantRequest.model_validate({"model": "m", field: "x" * limit})
    message, param = error_of(CreateAssistantRequest, {"model": "m", field: "x" * (limit + 1)})
    assert param == field
    assert message.startswith(f"Invalid '{field}': string too long.")


@pytest.mark.parametrize(
    ("model", "base", "limit"),
    [(CreateAssistantRequest, {"model": "m"}, 128), (CreateRunRequest, {"assistant_id": "a"}, 20)],
)
def test_tool_count(model: type[BaseModel], base: dict[str, Any], limit: int) -> None:
    """Assistants take up to 128 tools and runs up to 20."""
    tool = {"type": "code_interpreter"}
    model.model_validate({**base, "tools": [tool] * limit})
    message, param = error_of(model, {**base, "tools": [tool] * (limit + 1)})
    assert param == "tools"
    assert f"maximum length {limit}, but got an array with length {limit + 1}" in message


@pytest.mark.parametrize("name", ["get weather", "", "x" * 65, "naïve"])
def test_bad_function_name(name: str) -> None:
    """Function names must match ^[a-zA-Z0-9_-]{1,64}$."""
    body = {"model": "m", "tools": [{"type": "function", "function": {"name": name}}]}
    message, param = error_of(CreateAssistantRequest, body)
    assert param == "tools[0].function.name"
    assert message.startswith("Invalid 'tools[0].function.name': string does not match pattern.")


def test_function_name_at_limit() -> None:
    """A 64-character function name of allowed characters is accepted."""
    name = "a-b_C9" + "x" * 58
    CreateAssistantRequest.model_validate(
        {"model": "m", "tools": [{"type": "function", "function": {"name": name}}]}
    )


def test_function_tool_needs_function() -> None:
    """A function tool without its definition names the missing field, not the union tag."""
    assert error_of(CreateRunRequest, {"assistant_id": "a", "tools": [{"type": "function"}]}) == (
        "Missing required parameter: 'tools[0].function'.",
        "tools[0].function",
    )


def test_unknown_tool_type() -> None:
    """An unknown tool type points at the tool's `type` and lists the allowed values."""
    assert error_of(CreateAssistantRequest, {"model": "m", "tools": [{"type": "nope"}]}) == (
        "Invalid value for 'tools[0].type': 'nope'. "
        "Supported values are: 'code_interpreter', 'file_search', 'function'.",
        "tools[0].type",
    )


def test_tool_without_type() -> None:
    """A tool with no `type` reports `type` as missing."""
    assert error_of(CreateAssistantRequest, {"model": "m", "tools": [{}]}) == (
        "Missing required parameter: 'tools[0].type'.",
        "tools[0].type",
    )


@pytest.mark.parametrize(("value", "ok"), [(1, True), (50, True), (0, False), (51, False)])
def test_file_search_max_num_results(value: int, ok: bool) -> None:
    """file_search.max_num_results is an integer from 1 to 50."""
    body = {
        "model": "m",
        "tools": [{"type": "file_search", "file_search": {"max_num_results": value}}],
    }
    if ok:
        CreateAssistantRequest.model_validate(body)
    else:
        param = error_of(CreateAssistantRequest, body)[1]
        assert param == "tools[0].file_search.max_num_results"


def test_ranking_options_need_score_threshold() -> None:
    """ranking_options requires score_threshold."""
    tool = {"type": "file_search", "file_search": {"ranking_options": {"ranker": "auto"}}}
    assert error_of(CreateAssistantRequest, {"model": "m", "tools": [tool]})[1] == (
        "tools[0].file_search.ranking_options.score_threshold"
    )


@pytest.mark.parametrize("choice", ["none", "auto", "required", {"type": "file_search"}])
def test_tool_choice_values(choice: object) -> None:
    """tool_choice takes the three strings or a named tool."""
    run = CreateRunRequest.model_validate({"assistant_id": "a", "tool_choice": choice})
    assert run.model_dump(exclude_unset=True)["tool_choice"] == choice


def test_tool_choice_function_without_name() -> None:
    """A function tool_choice must name the function."""
    body = {"assistant_id": "a", "tool_choice": {"type": "function"}}
    assert error_of(CreateRunRequest, body) == (
        "Missing required parameter: 'tool_choice.function'.",
        "tool_choice.function",
    )
    body = {"assistant_id": "a", "tool_choice": {"type": "function", "function": {}}}
    assert error_of(CreateRunRequest, body)[1] == "tool_choice.function.name"


def test_tool_choice_bad_string() -> None:
    """An unknown tool_choice string lists the allowed strings."""
    assert error_of(CreateRunRequest, {"assistant_id": "a", "tool_choice": "always"}) == (
        "Invalid value for 'tool_choice': 'always'. "
        "Supported values are: 'none', 'auto' or 'required'.",
        "tool_choice",
    )


def test_response_format_bad_type() -> None:
    """An unknown response_format type points at response_format.type."""
    body = {"assistant_id": "a", "response_format": {"type": "xml"}}
    assert error_of(CreateRunRequest, body)[1] == "response_format.type"


def test_response_format_wrong_shape() -> None:
    """A response_format that is neither a string nor an object says what it should be."""
    assert error_of(CreateRunRequest, {"assistant_id": "a", "response_format": 1}) == (
        "Invalid type for 'response_format': "
        "expected 'auto' or an object with a 'type', but got an integer instead.",
        "response_format",
    )


def test_json_schema_needs_name() -> None:
    """json_schema.name is required."""
    body = {"model": "m", "response_format": {"type": "json_schema", "json_schema": {}}}
    assert error_of(CreateAssistantRequest, body)[1] == "response_format.json_schema.name"


def test_dump_uses_schema_key() -> None:
    """The JSON schema dumps under its wire name `schema`."""
    body = CreateAssistantRequest.model_validate(
        {"model": "m", "response_format": JSON_SCHEMA_FORMAT}
    )
    dumped = body.model_dump(exclude_unset=True, by_alias=True)
    assert dumped["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert "schema_" not in dumped["response_format"]["json_schema"]


def test_content_as_string() -> None:
    """A plain string is valid message content."""
    message = CreateMessageRequest.model_validate({"role": "assistant", "content": "Hello"})
    assert message.content == "Hello"


def test_content_as_parts() -> None:
    """A list of parts is valid message content and dumps as plain dicts."""
    dumped = CreateMessageRequest.model_validate(MESSAGE).model_dump(exclude_unset=True)
    assert dumped["content"] == MESSAGE["content"]


def test_content_empty_list() -> None:
    """An empty parts list is rejected."""
    message, param = error_of(CreateMessageRequest, {"role": "user", "content": []})
    assert param == "content"
    assert message.startswith("Invalid 'content': array too short.")


def test_content_wrong_shape() -> None:
    """Content that is neither a string nor a list says what it should be."""
    assert error_of(CreateMessageRequest, {"role": "user", "content": 5}) == (
        "Invalid type for 'content': "
        "expected a string or an array of content parts, but got an integer instead.",
        "content",
    )


def test_content_part_errors_point_into_the_part() -> None:
    """An error in a content part names the part's field, inside a nested message."""
    part = {"type": "image_file", "image_file": {"file_id": "f", "detail": "huge"}}
    body = {"assistant_id": "a", "thread": {"messages": [{"role": "user", "content": [part]}]}}
    message, param = error_of(CreateThreadAndRunRequest, body)
    assert param == "thread.messages[0].content[0].image_file.detail"
    assert message.startswith("Invalid value for 'thread.messages[0].content[0].image_file.detail'")


def test_image_url_needs_scheme() -> None:
    """An image URL must be absolute."""
    part = {"type": "image_url", "image_url": {"url": "a.png"}}
    param = error_of(CreateMessageRequest, {"role": "user", "content": [part]})[1]
    assert param == "content[0].image_url.url"


def test_bad_role() -> None:
    """Only user and assistant may create messages."""
    assert error_of(CreateMessageRequest, {"role": "system", "content": "x"}) == (
        "Invalid value for 'role': 'system'. Supported values are: 'user' or 'assistant'.",
        "role",
    )


def test_attachment_tool_types() -> None:
    """Attachment tools are code_interpreter or file_search only, without options."""
    attachment = {"file_id": "f", "tools": [{"type": "function"}]}
    body = {"role": "user", "content": "x", "attachments": [attachment]}
    assert error_of(CreateMessageRequest, body)[1] == "attachments[0].tools[0].type"


def test_vector_store_ids_and_helper_are_exclusive() -> None:
    """vector_store_ids and vector_stores may not both be given."""
    resources = {"file_search": {"vector_store_ids": ["vs_1"], "vector_stores": [{}]}}
    message, param = error_of(CreateThreadRequest, {"tool_resources": resources})
    assert param == "tool_resources.file_search"
    assert "not both" in message


@pytest.mark.parametrize(
    ("resources", "param"),
    [
        (
            {"code_interpreter": {"file_ids": ["f"] * 21}},
            "tool_resources.code_interpreter.file_ids",
        ),
        (
            {"file_search": {"vector_store_ids": ["a", "b"]}},
            "tool_resources.file_search.vector_store_ids",
        ),
        ({"file_search": {"vector_stores": [{}, {}]}}, "tool_resources.file_search.vector_stores"),
    ],
)
def test_tool_resource_limits(resources: dict[str, Any], param: str) -> None:
    """At most 20 code-interpreter files and one vector store."""
    assert error_of(CreateAssistantRequest, {"model": "m", "tool_resources": resources})[1] == param


def test_chunk_overlap_at_most_half() -> None:
    """A static chunking overlap above half the chunk size is rejected."""
    strategy = {
        "type": "static",
        "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 51},
    }
    resources = {"file_search": {"vector_stores": [{"chunking_strategy": strategy}]}}
    param = error_of(CreateThreadRequest, {"tool_resources": resources})[1]
    assert param == "tool_resources.file_search.vector_stores[0].chunking_strategy.static"


def test_truncation_last_messages_minimum() -> None:
    """truncation_strategy.last_messages is at least 1."""
    body = {
        "assistant_id": "a",
        "truncation_strategy": {"type": "last_messages", "last_messages": 0},
    }
    assert error_of(CreateRunRequest, body)[1] == "truncation_strategy.last_messages"


def test_reasoning_effort_values() -> None:
    """reasoning_effort takes only the listed efforts."""
    CreateRunRequest.model_validate({"assistant_id": "a", "reasoning_effort": "max"})
    assert error_of(CreateRunRequest, {"assistant_id": "a", "reasoning_effort": "huge"})[1] == (
        "reasoning_effort"
    )


def test_tool_outputs_required() -> None:
    """Submitting tool outputs requires the tool_outputs list."""
    assert error_of(SubmitToolOutputsRunRequest, {"stream": True}) == (
        "Missing required parameter: 'tool_outputs'.",
        "tool_outputs",
    )


def test_a_whole_number_written_with_a_fraction_is_an_integer() -> None:
    """300.0 is the integer 300, as JSON Schema (and so the published document) has it."""
    body = CreateRunRequest.model_validate({"assistant_id": "a", "max_prompt_tokens": 300.0})
    assert body.model_dump(exclude_unset=True)["max_prompt_tokens"] == 300
    assert type(body.model_dump(exclude_unset=True)["max_prompt_tokens"]) is int


@pytest.mark.parametrize("kind", ["code_interpreter", "file_search"])
def test_chat_tool_choice_names_only_functions(kind: str) -> None:
    """Chat completions take 'none', 'auto', 'required' or a function as tool_choice; an
    Assistants tool there is refused naming tool_choice.type (schemathesis found it accepted
    against the published schema)."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    for choice in ("auto", {"type": "function", "function": {"name": "f"}}):
        ChatCompletionRequest.model_validate(body | {"tool_choice": choice})
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate(body | {"tool_choice": {"type": kind}})
    message, param = validation_error_param(info.value)
    assert param == "tool_choice.type" and f"'{kind}'" in message
