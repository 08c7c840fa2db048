"""The built-in local model: a deterministic `ModelBackend` that needs no network.

It owns the gateway's offline answers, so the whole API (streaming, tool calls, usage, length
limits) can be exercised without an upstream. Its behaviour is fixed and exact:

Tokens
    A token is a run of non-whitespace characters plus the whitespace that follows it
    (`re.findall(r"\\S+\\s*", text)`); whitespace before the first word belongs to no token and
    is not counted. `count_tokens(messages)` sums, over the messages, the tokens of `content`
    and of each tool call's `name` and `arguments`; non-text parts count 0.

Answers, decided from the messages after the last `user` message
    1. If any of them has role `tool` (outputs of calls made in this run), the answer is text
       naming every output in order, e.g. `Tool results: get_weather returned {"temp_c": 21}.`;
       several are joined with `"; "`. The name comes from the assistant tool call whose id
       matches `tool_call_id` (`unknown` when none does). No tool is called again.
    2. Otherwise, if the request has function tools and `tool_choice` is not `"none"`, it calls
       the tools named in the current turn (the user messages since the assistant last
       answered): a tool is named by its function name as a whole word, or by all the words of
       that name that say what it is about (any case, singular or plural): the name split at
       `_`, `-` and camelCase after a `...Plugin-` or `namespace.` prefix, without a leading
       generic verb (get, fetch, ...) and qualifiers (current, latest, ...). So `get_weather`
       and `getCurrentWeather` are named by "What's the weather like in Miami?", and
       `MenuPlugin-get_specials` by "What are the specials?". A tool is also named by the
       subject of its description: the first word of the description's first sentence that is
       not a verb such as get or returns, an article, a preposition, a qualifier or a word
       about tools themselves ("Use this tool to look up the current weather" has the subject
       "weather"; "Provides a list of specials from the menu", "specials"). The hosted tools
       below are not named by their descriptions. Calls follow the order of first mention,
       each tool once. `tool_choice="required"` with none named calls the first tool;
       `tool_choice={"type": "function", "function": {"name": X}}` calls X alone, named or
       not; `parallel_tool_calls=False` keeps only the first call. Every call gets the same
       arguments: the first JSON object in the turn's text (scanning each `{`), re-serialized
       compactly, else `{}`. Each call streams as a chunk with its new `call_` id and name,
       then its arguments in fragments of at most 8 characters. The finish reason is
       `tool_calls`.
       With a `file_search` function offered (the hosted tool) and no other tool named, it
       calls file_search instead, its arguments `{"query": <the turn's text>}`; after its
       results the answer quotes the best one and cites it: `According to <file>: "<its
       first sentence>" 【0†<file>】`, or `I found nothing about that in the files.`
       With a `code_interpreter` function offered and the turn holding a fenced code block
       (```` ``` ```` or ```` ```python ````), it calls code_interpreter with `{"code": <the
       first block>}` (a turn that names "code interpreter" runs its first `inline` code
       instead); after the output the answer is `I ran the code. Its output:` and the output.
    3. Otherwise the answer is text: `You said: <the last user message's content>`, or
       `Hello! Send me a message and I will repeat it.` when there is no user message.
    4. A last user message containing `[[fail]]` gets the text answer of 3, but the model
       raises `ModelBackendError` after two tokens: the run ends `failed`, for testing failure
       handling offline.

    A text answer (1 or 3) under `response_format` `json_object` or `json_schema` becomes
    `{"reply": <that text>}` (as `json.dumps` writes it, non-ASCII kept). Text streams one
    `TextChunk` per token; the finish reason is `stop`, or `length` when the answer has more
    tokens than `max_completion_tokens`, in which case exactly that many are sent. Tool calls
    ignore `max_completion_tokens`.

Usage
    The final `Finish` carries `prompt_tokens = count_tokens(request.messages)` and
    `completion_tokens` = the text tokens sent, or for tool calls the tokens of each call's
    name plus its arguments.

Pace
    After every chunk before `Finish` the stream sleeps `delay_ms` milliseconds. Unpaced
    (`delay_ms` 0) it yields to the event loop once every `UNPACED_BURST` chunks, as a network
    upstream's chunks arrive several to a read: the chunks between two yields reach a stream's
    client in one write, and a cancel lands within that many chunks.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from gateway import citations
from gateway.ids import call_id
from gateway.models.base import (
    ChatMessage,
    Finish,
    FinishReason,
    ModelBackendError,
    ModelChunk,
    ModelRequest,
    TextChunk,
    ToolCallChunk,
)

GREETING = "Hello! Send me a message and I will repeat it."
# The hosted file_search tool's function, and how many words of a result an answer quotes.
FILE_SEARCH = "file_search"
QUOTE_WORDS = 40
# The hosted code_interpreter tool's function, and the code a turn asks it to run.
CODE_INTERPRETER = "code_interpreter"
_FENCED = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_INLINE = re.compile(r"`([^`\n]+)`")
# A user message containing this makes the model fail after two tokens, so that apps can
# exercise their handling of failed runs offline (as a payment sandbox has cards that decline).
FAIL_TRIGGER = "[[fail]]"
FAILURE_MESSAGE = "The local model failed on purpose: the message asked for it with [[fail]]."
ARGUMENT_FRAGMENT_CHARS = 8
UNPACED_BURST = 32

_TOKEN = re.compile(r"\S+\s*")
_JSON_FORMATS = frozenset({"json_object", "json_schema"})


def tokenize(text: str) -> list[str]:
    """Split text into words, each with its trailing whitespace; leading whitespace is dropped."""
    return _TOKEN.findall(text)


def count_tokens(messages: Sequence[ChatMessage]) -> int:
    """Tokens in every message's content and in each of its tool calls' name and arguments."""
    total = 0
    for message in messages:
        total += len(tokenize(message.content))
        for call in message.tool_calls:
            total += len(tokenize(call.name)) + len(tokenize(call.arguments))
    return total


class LocalModelBackend:
    """The deterministic offline model described in this module's docstring."""

    def __init__(self, delay_ms: float = 0.0) -> None:
        if delay_ms < 0:
            raise ValueError(f"delay_ms must be >= 0, got {delay_ms}")
        self._delay_s = delay_ms / 1000

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return count_tokens(messages)

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ModelChunk, None]:
        prompt_tokens = count_tokens(request.messages)
        user, after_user = _split_at_last_user(request.messages)
        outputs = [message for message in after_user if message.role == "tool"]
        user_text = user.content if user is not None else ""

        turn = _turn_text(request.messages)
        code = None if outputs else _code_to_run(request, turn)
        names = [] if outputs or code is not None else _calls_to_make(request, turn)
        searching = names == [FILE_SEARCH] or (
            not names and code is None and _searches(request, outputs)
        )
        if searching and not outputs:
            names = [FILE_SEARCH]
        if code is not None:
            names = [CODE_INTERPRETER]
        if names:
            if code is not None:
                arguments = json.dumps({"code": code}, ensure_ascii=False)
            elif searching:
                arguments = json.dumps({"query": turn}, ensure_ascii=False)
            else:
                arguments = _arguments(turn)
            completion_tokens = sent = 0
            for index, name in enumerate(names):
                yield ToolCallChunk(index=index, id=call_id(), name=name, arguments="")
                sent += 1
                await self._pause(sent)
                for start in range(0, len(arguments), ARGUMENT_FRAGMENT_CHARS):
                    fragment = arguments[start : start + ARGUMENT_FRAGMENT_CHARS]
                    yield ToolCallChunk(index=index, arguments=fragment)
                    sent += 1
                    await self._pause(sent)
                completion_tokens += len(tokenize(name)) + len(tokenize(arguments))
            yield Finish("tool_calls", prompt_tokens, completion_tokens)
            return

        search = _search_output(request.messages, outputs)
        ran = _output_of(CODE_INTERPRETER, request.messages, outputs)
        if search is not None:
            text = _quote(search)
        elif ran is not None:
            text = f"I ran the code. Its output:\n\n{ran.strip()}"
        elif outputs:
            text = _tool_results_text(request.messages, outputs)
        elif user is not None:
            text = f"You said: {user_text}"
        else:
            text = GREETING
        if _wants_json(request.response_format):
            text = json.dumps({"reply": text}, ensure_ascii=False)

        tokens = tokenize(text)
        reason: FinishReason = "stop"
        limit = request.max_completion_tokens
        if limit is not None and len(tokens) > limit:
            tokens = tokens[: max(limit, 0)]
            reason = "length"
        fail = not outputs and FAIL_TRIGGER in user_text
        for sent, token in enumerate(tokens):
            if fail and sent == 2:
                raise ModelBackendError(FAILURE_MESSAGE)
            yield TextChunk(token)
            await self._pause(sent + 1)
        yield Finish(reason, prompt_tokens, len(tokens))

    async def _pause(self, sent: int) -> None:
        """After the chunk numbered `sent` (from 1) of a stream."""
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        elif sent % UNPACED_BURST == 0:
            await asyncio.sleep(0)


def _split_at_last_user(
    messages: Sequence[ChatMessage],
) -> tuple[ChatMessage | None, Sequence[ChatMessage]]:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return messages[index], messages[index + 1 :]
    return None, messages


def _turn_text(messages: Sequence[ChatMessage]) -> str:
    """The user's side of the current turn: the user messages since the assistant last spoke."""
    turn: list[str] = []
    for message in reversed(messages):
        if message.role == "user":
            turn.append(message.content)
        elif message.role in ("assistant", "tool"):
            break
    return "\n".join(reversed(turn))


def _tool_results_text(messages: Sequence[ChatMessage], outputs: Sequence[ChatMessage]) -> str:
    names = {call.id: call.name for message in messages for call in message.tool_calls}
    results = "; ".join(
        f"{names.get(output.tool_call_id or '', 'unknown')} returned {output.content}"
        for output in outputs
    )
    return f"Tool results: {results}."


def _searches(request: ModelRequest, outputs: Sequence[ChatMessage]) -> bool:
    """Whether this turn calls file_search: it is offered, may be called, nothing ran yet."""
    choice = request.tool_choice
    return (
        not outputs
        and FILE_SEARCH in _functions(request.tools)
        and choice != "none"
        and not (isinstance(choice, dict) and choice.get("function", {}).get("name") != FILE_SEARCH)
    )


def _search_output(messages: Sequence[ChatMessage], outputs: Sequence[ChatMessage]) -> str | None:
    return _output_of(FILE_SEARCH, messages, outputs)


def _output_of(
    name: str, messages: Sequence[ChatMessage], outputs: Sequence[ChatMessage]
) -> str | None:
    """The output of this turn's call of the function `name`, if it made one."""
    names = {call.id: call.name for message in messages for call in message.tool_calls}
    for output in outputs:
        if names.get(output.tool_call_id or "") == name:
            return output.content
    return None


def _code_to_run(request: ModelRequest, turn: str) -> str | None:
    """The code this turn runs with code_interpreter, when it is offered and may be called: its
    first fenced code block, or, when the turn names the tool, its first `inline` code."""
    choice = request.tool_choice
    if (
        CODE_INTERPRETER not in _functions(request.tools)
        or choice == "none"
        or (isinstance(choice, dict) and choice.get("function", {}).get("name") != CODE_INTERPRETER)
    ):
        return None
    fenced = _FENCED.search(turn)
    if fenced:
        return fenced.group(1)
    if re.search(r"code[ _]interpreter", turn, re.IGNORECASE):
        inline = _INLINE.search(turn)
        if inline:
            return inline.group(1)
    return None


def _quote(output: str) -> str:
    """The best result of a file_search output, quoted (its first sentence) and cited."""
    results = citations.parse(output)
    if not results:
        return "I found nothing about that in the files."
    number, filename, text = results[0]
    sentence = re.split(r"(?<=[.!?])\s", " ".join(text.split()), maxsplit=1)[0]
    words = sentence.split()
    excerpt = " ".join(words[:QUOTE_WORDS]) + (" ..." if len(words) > QUOTE_WORDS else "")
    return f'According to {filename}: "{excerpt}" {citations.marker(number, filename)}'


def _functions(tools: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The function tools offered, in order: each name with its description ("" when none)."""
    found: dict[str, str] = {}
    for tool in tools:
        function = tool.get("function")
        if tool.get("type") == "function" and isinstance(function, dict):
            name = function.get("name")
            if isinstance(name, str) and name and name not in found:
                description = function.get("description")
                found[name] = description if isinstance(description, str) else ""
    return found


# Leading verbs that say nothing about what a tool is about: `get_weather` is named by "weather".
_GENERIC_VERBS = frozenset(
    [
        "get",
        "set",
        "fetch",
        "find",
        "lookup",
        "look",
        "search",
        "list",
        "create",
        "update",
        "delete",
        "make",
        "do",
        "run",
        "call",
        "query",
        "check",
        "send",
        "read",
        "write",
        "compute",
        "calculate",
    ]
)


# Words of a function name that say how, not what: `getCurrentWeather` is named by "weather".
_QUALIFIERS = frozenset(
    {
        *("current", "latest", "recent", "new", "all", "info", "information", "details"),
        *("data", "by", "for", "of", "the", "a", "an", "to", "from", "in", "on", "my"),
    }
)
# Words a description opens with before its subject: verbs (and their third person), articles,
# prepositions and words about tools themselves. "Gets the current weather for a city": weather.
_NOT_SUBJECTS = frozenset(
    {
        *_GENERIC_VERBS,
        *(verb + "s" for verb in _GENERIC_VERBS),
        *(verb + "es" for verb in _GENERIC_VERBS),
        *_QUALIFIERS,
        *("provide", "provides", "return", "returns", "retrieve", "retrieves", "give", "gives"),
        *("show", "shows", "tell", "tells", "answer", "answers", "up", "use", "uses", "used"),
        *("this", "that", "these", "those", "it", "its", "is", "are", "be", "can", "will", "with"),
        *("at", "as", "and", "or", "about", "some", "any", "one", "tool", "function", "method"),
        *("api", "helper", "user", "users", "given", "specified", "provided", "list", "lists"),
        *("when", "which", "what", "you", "your", "me", "us", "our", "named", "called"),
    }
)
# A prefix naming where a function lives: Semantic Kernel's `MenuPlugin-`, a `namespace.`.
_PREFIX = re.compile(r"^(?:[A-Za-z0-9]*Plugin-|.*\.)")


def _name_words(name: str) -> list[str]:
    """The words of a function name that say what it is about: split at `_`, `-` and
    camelCase, after a `...Plugin-` or `namespace.` prefix, without a leading generic verb
    and without qualifiers such as "current"."""
    bare = _PREFIX.sub("", name) or name
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", bare)]
    if len(words) > 1 and words[0] in _GENERIC_VERBS:
        words = words[1:]
    kept = [w for w in words if w not in _QUALIFIERS]
    return kept or words


def _subject(description: str) -> str | None:
    """What a description says its tool is about: the first word of its first sentence that is
    not a verb, article, preposition, qualifier or word about tools (see _NOT_SUBJECTS)."""
    sentence = re.split(r"(?<=[.!?])\s", description.strip(), maxsplit=1)[0]
    words: list[str] = re.findall(r"[a-z0-9]+", sentence.lower())
    for word in words:
        if len(word) > 1 and word not in _NOT_SUBJECTS:
            return word
    return None


def _find_word(word: str, text: str) -> int | None:
    """Where `word` is in the text as a whole word."""
    match = re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, flags=re.IGNORECASE)
    return None if match is None else match.start()


def _find_any_form(word: str, text: str) -> int | None:
    """Where `word` is in the text as a whole word, singular or plural."""
    forms = {word, word + "s", word[:-1] if word.endswith("s") and len(word) > 3 else word}
    places = [p for form in forms if (p := _find_word(form, text)) is not None]
    return min(places) if places else None


def _named_in(text: str, functions: dict[str, str]) -> list[str]:
    """The tools the text names, in order of first mention. A tool is named by its function name
    as a whole word, by all the words of that name that say what it is about, or by the
    subject of its description (any case, singular or plural)."""
    found: list[tuple[int, str]] = []
    for name, description in functions.items():
        places: list[int] = []
        whole = _find_word(name, text)
        if whole is not None:
            places.append(whole)
        words = _name_words(name)
        in_name = [_find_any_form(word, text) for word in words]
        if words and all(p is not None for p in in_name):
            places.append(min(p for p in in_name if p is not None))
        # The hosted tools have rules of their own (see the module's docstring).
        subject = None if name in (FILE_SEARCH, CODE_INTERPRETER) else _subject(description)
        about = None if subject is None else _find_any_form(subject, text)
        if about is not None:
            places.append(about)
        if places:
            found.append((min(places), name))
    return [name for _, name in sorted(found)]


def _calls_to_make(request: ModelRequest, user_text: str) -> list[str]:
    functions = _functions(request.tools)
    names = list(functions)
    choice = request.tool_choice
    if not names or choice == "none":
        return []
    if isinstance(choice, dict):
        function = choice.get("function")
        if choice.get("type") != "function" or not isinstance(function, dict):
            return []
        forced = function.get("name")
        return [forced] if isinstance(forced, str) else []
    calls = _named_in(user_text, functions)
    if not calls and choice == "required":
        calls = names[:1]
    return calls if request.parallel_tool_calls else calls[:1]


def _reject_constant(name: str) -> object:
    # NaN and Infinity are not JSON; an object holding one is skipped like any other non-JSON.
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _arguments(text: str) -> str:
    """The first JSON object in text, serialized compactly; `{}` when there is none."""
    start = text.find("{")
    while start != -1:
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            pass
        else:
            if isinstance(value, dict):
                return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        start = text.find("{", start + 1)
    return "{}"


def _wants_json(response_format: str | dict[str, Any]) -> bool:
    return isinstance(response_format, dict) and response_format.get("type") in _JSON_FORMATS
