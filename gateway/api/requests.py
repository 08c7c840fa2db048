"""Request bodies of the Assistants v2 API as strict pydantic models.

Every model forbids unknown fields and coerces nothing (`"1"` is not an integer; an integer is a
number). An explicit `null` on an optional field means "not set": the field is left out of the
dict the handler gets. Validating, and how a failure reads, is `validation.py`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    model_validator,
)

__all__ = [
    "ChatCompletionRequest",
    "CreateAssistantRequest",
    "CreateMessageRequest",
    "CreateRunRequest",
    "CreateThreadAndRunRequest",
    "CreateThreadRequest",
    "Metadata",
    "ModifyAssistantRequest",
    "ModifyMessageRequest",
    "ModifyRunRequest",
    "ModifyThreadRequest",
    "SubmitToolOutputsRunRequest",
    "ToolOutput",
]


class _Body(BaseModel):
    """A JSON object of a request body: no unknown fields, no coercion, null means unset."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="after")
    def _null_is_unset(self) -> Self:
        # Clients send explicit nulls for "not given"; drop them so exclude_unset leaves them out.
        for name in [name for name in self.model_fields_set if getattr(self, name) is None]:
            self.model_fields_set.discard(name)
        return self


# -- shared scalars ---------------------------------------------------------------------------

METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY = 64
METADATA_MAX_VALUE = 512


def _check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > METADATA_MAX_PAIRS:
        raise ValueError(
            f"too many pairs. Expected at most {METADATA_MAX_PAIRS} key-value pairs, "
            f"but got {len(value)} instead."
        )
    for key, item in value.items():
        if len(key) > METADATA_MAX_KEY:
            raise ValueError(
                f"key too long. Expected keys of at most {METADATA_MAX_KEY} characters, "
                f"but got a key of {len(key)} characters instead."
            )
        if len(item) > METADATA_MAX_VALUE:
            raise ValueError(
                f"value too long. Expected values of at most {METADATA_MAX_VALUE} characters, "
                f"but got a value of {len(item)} characters for key '{key}' instead."
            )
    return value


# A string-to-string map of at most 16 pairs (keys <= 64 chars, values <= 512 chars), or null;
# the published schema states those limits (the validator gives OpenAI's messages).
Metadata = Annotated[
    dict[str, str] | None,
    AfterValidator(_check_metadata),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "object",
                    "maxProperties": METADATA_MAX_PAIRS,
                    "propertyNames": {"maxLength": METADATA_MAX_KEY},
                    "additionalProperties": {"type": "string", "maxLength": METADATA_MAX_VALUE},
                },
                {"type": "null"},
            ]
        }
    ),
]


def _whole_number(value: Any) -> Any:
    """A whole-valued JSON number (`10.0`) is the integer it equals, as JSON Schema has it;
    anything else is left for strict validation to judge."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# On an integer field, after its bounds (`Annotated[int, Field(ge=1), WHOLE]`, so that the
# published schema keeps them as minimum/maximum): strict (no strings, no booleans), but 10.0
# is 10. Such a field needs an upper bound, at most MAX_INTEGER: a float as large as 1e30 is
# whole too, and no encoder writes the integer it becomes.
WHOLE = BeforeValidator(_whole_number)
MAX_INTEGER = 2**63 - 1

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
ImageDetail = Literal["auto", "low", "high"]

# A scheme, a colon and something that is not blank; the same pattern in the published schema,
# so the blank characters are spelled out (regex classes like \s differ between dialects).
URI_PATTERN = r"^[A-Za-z][A-Za-z0-9+.\-]*:[^ \t\n\r\f\v]"
_URI = re.compile(URI_PATTERN)


def _check_uri(value: str) -> str:
    if not _URI.match(value):
        raise ValueError("expected an absolute URL with a scheme, such as 'https://...'.")
    return value


# Levels of objects and arrays one free-form JSON value (a function's parameters, a response
# schema) may nest: far more than any real schema needs, and far fewer than the 254 at which
# orjson stops encoding (the value is saved and sent inside its assistant or run). Its numbers
# need no bound: orjson reads an integer past 64 bits as a float, which it can write again.
MAX_JSON_DEPTH = 128


def _check_depth(value: Any) -> Any:
    """Refuse a value nested more than MAX_JSON_DEPTH levels (walked without recursion)."""
    pending = [(value, 1)]
    while pending:
        node, level = pending.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                if level == MAX_JSON_DEPTH:
                    raise ValueError(
                        f"nested too deeply. Expected at most {MAX_JSON_DEPTH} levels of "
                        "objects and arrays."
                    )
                pending.append((child, level + 1))
    return value


# A JSON object of the client's own shape, within MAX_JSON_DEPTH levels.
FreeFormObject = Annotated[dict[str, Any], AfterValidator(_check_depth)]


def _json_shape(value: Any) -> str | None:
    """The tag of a value for unions of a string (or array) and an object."""
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict | BaseModel):
        return "object"
    return None


def _shape_union(expected: str) -> Discriminator:
    # The custom error replaces pydantic's per-member errors, which would name the wrong member.
    return Discriminator(
        _json_shape,
        custom_error_type="wire_type",
        custom_error_message=f"Input should be {expected}",
    )


# -- tools ------------------------------------------------------------------------------------


class CodeInterpreterTool(_Body):
    type: Literal["code_interpreter"]


class FileSearchRankingOptions(_Body):
    ranker: Literal["auto", "default_2024_08_21"] | None = None
    score_threshold: float = Field(ge=0, le=1)


class FileSearchOverrides(_Body):
    max_num_results: Annotated[int, Field(ge=1, le=50), WHOLE] | None = None
    ranking_options: FileSearchRankingOptions | None = None


class FileSearchTool(_Body):
    type: Literal["file_search"]
    file_search: FileSearchOverrides | None = None


class FunctionDefinition(_Body):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: FreeFormObject | None = None
    strict: bool | None = None


class FunctionTool(_Body):
    type: Literal["function"]
    function: FunctionDefinition


Tool = Annotated[CodeInterpreterTool | FileSearchTool | FunctionTool, Field(discriminator="type")]


class FunctionName(_Body):
    name: str


class NamedFunctionChoice(_Body):
    type: Literal["function"]
    function: FunctionName


class NamedToolChoice(_Body):
    type: Literal["code_interpreter", "file_search"]
    function: FunctionName | None = None  # the schema allows it on every type; it means nothing


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("string")]
    | Annotated[NamedFunctionChoice | NamedToolChoice, Field(discriminator="type"), Tag("object")],
    _shape_union("'none', 'auto', 'required' or an object naming a tool"),
]

# Chat completions name only functions: the Assistants tools have no meaning there.
ChatToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("string")]
    | Annotated[NamedFunctionChoice, Tag("object")],
    _shape_union("'none', 'auto', 'required' or an object naming a function"),
]


# -- tool resources ---------------------------------------------------------------------------


class CodeInterpreterResources(_Body):
    file_ids: list[str] | None = Field(default=None, max_length=20)


class FileSearchResources(_Body):
    vector_store_ids: list[str] | None = Field(default=None, max_length=1)


class ToolResources(_Body):
    code_interpreter: CodeInterpreterResources | None = None
    file_search: FileSearchResources | None = None


class AutoChunking(_Body):
    type: Literal["auto"]


class StaticChunkingSize(_Body):
    max_chunk_size_tokens: Annotated[int, Field(ge=100, le=4096), WHOLE]
    # At most half of max_chunk_size_tokens (checked below), so never more than 2048.
    chunk_overlap_tokens: Annotated[int, Field(ge=0, le=2048), WHOLE]

    @model_validator(mode="after")
    def _overlap_at_most_half(self) -> Self:
        if self.chunk_overlap_tokens * 2 > self.max_chunk_size_tokens:
            raise ValueError("chunk_overlap_tokens must not exceed half of max_chunk_size_tokens.")
        return self


class StaticChunking(_Body):
    type: Literal["static"]
    static: StaticChunkingSize


ChunkingStrategy = Annotated[AutoChunking | StaticChunking, Field(discriminator="type")]


class VectorStoreHelper(_Body):
    file_ids: list[str] | None = Field(default=None, max_length=100_000_000)
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata = None


class FileSearchResourcesWithHelper(FileSearchResources):
    """On create assistant and create thread, a vector store may be made from files instead."""

    vector_stores: list[VectorStoreHelper] | None = Field(default=None, max_length=1)

    @model_validator(mode="after")
    def _ids_or_helper(self) -> Self:
        if self.vector_store_ids is not None and self.vector_stores is not None:
            raise ValueError("give either vector_store_ids or vector_stores, not both.")
        return self


class ToolResourcesWithHelper(ToolResources):
    file_search: FileSearchResourcesWithHelper | None = None


# -- response format and truncation -----------------------------------------------------------


class TextFormat(_Body):
    type: Literal["text"]


class JsonObjectFormat(_Body):
    type: Literal["json_object"]


class JsonSchemaSpec(_Body):
    name: str
    description: str | None = None
    # `schema` would shadow BaseModel.schema, so the attribute is renamed and the alias is the wire.
    schema_: FreeFormObject | None = Field(default=None, alias="schema")
    strict: bool | None = None


class JsonSchemaFormat(_Body):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[
    Annotated[Literal["auto"], Tag("string")]
    | Annotated[
        TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type"), Tag("object")
    ],
    _shape_union("'auto' or an object with a 'type'"),
]


class TruncationStrategy(_Body):
    type: Literal["auto", "last_messages"]
    last_messages: Annotated[int, Field(ge=1, le=MAX_INTEGER), WHOLE] | None = None


# -- messages ---------------------------------------------------------------------------------


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ImageFile(_Body):
    file_id: str
    detail: ImageDetail | None = None


class ImageFilePart(_Body):
    type: Literal["image_file"]
    image_file: ImageFile


class ImageUrl(_Body):
    url: Annotated[
        str,
        AfterValidator(_check_uri),
        WithJsonSchema({"type": "string", "pattern": URI_PATTERN}),
    ]
    detail: ImageDetail | None = None


class ImageUrlPart(_Body):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImageFilePart | ImageUrlPart, Field(discriminator="type")]

Content = Annotated[
    Annotated[str, Tag("string")] | Annotated[list[ContentPart], Field(min_length=1), Tag("array")],
    _shape_union("a string or an array of content parts"),
]


class FileSearchTypeOnly(_Body):
    type: Literal["file_search"]


AttachmentTool = Annotated[CodeInterpreterTool | FileSearchTypeOnly, Field(discriminator="type")]


class Attachment(_Body):
    file_id: str
    tools: list[AttachmentTool]


class CreateMessageRequest(_Body):
    role: Literal["user", "assistant"]
    content: Content
    attachments: list[Attachment] | None = None
    metadata: Metadata = None


class ModifyMessageRequest(_Body):
    metadata: Metadata = None


# -- assistants -------------------------------------------------------------------------------


class _AssistantFields(_Body):
    model: str | None = None
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=512)
    instructions: str | None = Field(default=None, max_length=256_000)
    reasoning_effort: ReasoningEffort | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_resources: ToolResources | None = None
    metadata: Metadata = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    response_format: ResponseFormat | None = None


class CreateAssistantRequest(_AssistantFields):
    model: str
    tool_resources: ToolResourcesWithHelper | None = None


class ModifyAssistantRequest(_AssistantFields):
    pass


# -- threads ----------------------------------------------------------------------------------


class CreateThreadRequest(_Body):
    messages: list[CreateMessageRequest] | None = None
    tool_resources: ToolResourcesWithHelper | None = None
    metadata: Metadata = None


class ModifyThreadRequest(_Body):
    tool_resources: ToolResources | None = None
    metadata: Metadata = None


# -- runs -------------------------------------------------------------------------------------


class _RunFields(_Body):
    assistant_id: str
    model: str | None = None
    instructions: str | None = None
    tools: list[Tool] | None = Field(default=None, max_length=20)
    metadata: Metadata = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool | None = None
    max_prompt_tokens: Annotated[int, Field(ge=256, le=MAX_INTEGER), WHOLE] | None = None
    max_completion_tokens: Annotated[int, Field(ge=256, le=MAX_INTEGER), WHOLE] | None = None
    truncation_strategy: TruncationStrategy | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None


class CreateRunRequest(_RunFields):
    reasoning_effort: ReasoningEffort | None = None
    additional_instructions: str | None = None
    additional_messages: list[CreateMessageRequest] | None = None


class CreateThreadAndRunRequest(_RunFields):
    thread: CreateThreadRequest | None = None
    tool_resources: ToolResources | None = None


class ModifyRunRequest(_Body):
    metadata: Metadata = None


class ToolOutput(_Body):
    # The schema leaves both optional, but an output nobody can match to its call is useless.
    tool_call_id: str
    output: str


class SubmitToolOutputsRunRequest(_Body):
    tool_outputs: list[ToolOutput]
    stream: bool | None = None


class ChatMessageIn(BaseModel):
    """One chat message; its other fields pass through to an upstream untouched."""

    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[FreeFormObject] | None = None


class ChatCompletionRequest(BaseModel):
    """The fields the gateway reads from a chat-completions body. Anything else is allowed: an
    upstream gets the body exactly as sent, and the built-in model ignores what it cannot use."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: ChatToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: FreeFormObject | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: Annotated[int, Field(ge=1, le=MAX_INTEGER), WHOLE] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=MAX_INTEGER), WHOLE] | None = None


# What a request body model is, for modules that name the type without importing pydantic.
Body = BaseModel

# The models a request body (or, for tool outputs, each item of one) is validated with: the ones
# whose error paths are named from the top of the body (validation.py).
# -- files ------------------------------------------------------------------------------------


Purpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]


class FileExpiresAfter(_Body):
    anchor: Literal["created_at"]
    seconds: Annotated[int, Field(ge=3600, le=2_592_000), WHOLE]


class CreateFileForm(_Body):
    """The fields of POST /files beside the file itself (multipart/form-data)."""

    purpose: Purpose
    expires_after: FileExpiresAfter | None = None


class CreateUploadRequest(_Body):
    filename: str = Field(min_length=1, max_length=1024)
    purpose: Purpose
    bytes: Annotated[int, Field(ge=0, le=MAX_INTEGER), WHOLE]
    mime_type: str = Field(min_length=1, max_length=256)
    expires_after: FileExpiresAfter | None = None


class AddUploadPartForm(_Body):
    """The fields of POST /uploads/{id}/parts beside the part's bytes (`data`): none."""


class CompleteUploadRequest(_Body):
    part_ids: list[str] = Field(max_length=10_000)
    md5: str | None = Field(default=None, max_length=64)


# -- vector stores ----------------------------------------------------------------------------


def _check_attributes(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(value) > 16:
        raise ValueError("attributes may have at most 16 keys.")
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError(f"attribute key {key[:20]!r}... is longer than 64 characters.")
        if isinstance(item, str) and len(item) > 512:
            raise ValueError(f"attribute {key!r} is longer than 512 characters.")
    return value


Attributes = Annotated[
    dict[str, str | bool | int | float] | None,
    AfterValidator(_check_attributes),
]


class VectorStoreExpiresAfter(_Body):
    anchor: Literal["last_active_at"]
    days: Annotated[int, Field(ge=1, le=365), WHOLE]


class CreateVectorStoreRequest(_Body):
    file_ids: list[str] | None = Field(default=None, max_length=500)
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=512)
    expires_after: VectorStoreExpiresAfter | None = None
    chunking_strategy: ChunkingStrategy | None = None
    metadata: Metadata = None


class ModifyVectorStoreRequest(_Body):
    name: str | None = Field(default=None, max_length=256)
    expires_after: VectorStoreExpiresAfter | None = None
    metadata: Metadata = None


class CreateVectorStoreFileRequest(_Body):
    file_id: str = Field(min_length=1, max_length=128)
    chunking_strategy: ChunkingStrategy | None = None
    attributes: Attributes = None


class UpdateVectorStoreFileRequest(_Body):
    attributes: Attributes


class CreateFileBatchRequest(_Body):
    file_ids: list[str] | None = Field(default=None, min_length=1, max_length=2000)
    files: list[CreateVectorStoreFileRequest] | None = Field(
        default=None, min_length=1, max_length=2000
    )
    chunking_strategy: ChunkingStrategy | None = None
    attributes: Attributes = None

    @model_validator(mode="after")
    def _ids_or_files(self) -> Self:
        if (self.file_ids is None) == (self.files is None):
            raise ValueError("give either file_ids or files, one of them.")
        return self


ComparisonOp = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"]


class ComparisonFilter(_Body):
    type: ComparisonOp
    key: str = Field(max_length=64)
    value: str | bool | int | float | list[str | int | float]


class CompoundFilter(_Body):
    type: Literal["and", "or"]
    filters: list[SearchFilter] = Field(max_length=64)


def _filter_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "compound" if kind in ("and", "or") else "comparison"


# Told apart by a function of `type`, not a discriminator mapping: the published mapping (eight
# values to one kind) led schemathesis to call a valid filter invalid.
SearchFilter = Annotated[
    Annotated[ComparisonFilter, Tag("comparison")] | Annotated[CompoundFilter, Tag("compound")],
    Discriminator(_filter_kind),
]
CompoundFilter.model_rebuild()  # its `filters` names SearchFilter, defined after it


class SearchRankingOptions(_Body):
    ranker: Literal["none", "auto", "default-2024-11-15"] | None = None
    score_threshold: float | None = Field(default=None, ge=0, le=1)


class SearchVectorStoreRequest(_Body):
    query: Annotated[
        Annotated[str, Field(min_length=1, max_length=4096), Tag("string")]
        | Annotated[
            list[Annotated[str, Field(min_length=1, max_length=4096)]],
            Field(min_length=1, max_length=16),
            Tag("array"),
        ],
        _shape_union("a string or an array of strings"),
    ]
    rewrite_query: bool | None = None
    max_num_results: Annotated[int, Field(ge=1, le=50), WHOLE] | None = None
    filters: SearchFilter | None = None
    ranking_options: SearchRankingOptions | None = None


TOP_LEVEL: tuple[type[BaseModel], ...] = (
    CreateAssistantRequest,
    ModifyAssistantRequest,
    CreateThreadRequest,
    ModifyThreadRequest,
    CreateMessageRequest,
    ModifyMessageRequest,
    CreateRunRequest,
    CreateThreadAndRunRequest,
    ModifyRunRequest,
    SubmitToolOutputsRunRequest,
    ToolOutput,
    ChatCompletionRequest,
    CreateFileForm,
    CreateUploadRequest,
    AddUploadPartForm,
    CompleteUploadRequest,
    CreateVectorStoreRequest,
    ModifyVectorStoreRequest,
    CreateVectorStoreFileRequest,
    UpdateVectorStoreFileRequest,
    CreateFileBatchRequest,
    SearchVectorStoreRequest,
)
