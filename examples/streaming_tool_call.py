"""A streamed run with a tool call, through the official openai SDK, against the gateway.

    .venv/bin/gateway serve &              # in another terminal
    .venv/bin/pip install openai           # the SDK (the gateway itself does not need it)
    .venv/bin/python examples/streaming_tool_call.py

The built-in model calls `getCurrentWeather` for the question below (it matches a tool by what
its name is about), the example answers the call with its own output, and the run streams the
model's reply. Point OPENAI_BASE_URL at any gateway; OPENAI_API_KEY is its key, if it has keys.
"""

from __future__ import annotations

import json
import os
import warnings

from openai import AssistantEventHandler, OpenAI
from openai.types.beta import FunctionToolParam
from openai.types.beta.threads import Run, Text, TextDelta
from openai.types.beta.threads.run_submit_tool_outputs_params import ToolOutput

# The SDK marks the Assistants API deprecated (OpenAI shut theirs down); the gateway serves it.
warnings.filterwarnings("ignore", message=".*deprecated", category=DeprecationWarning)

client = OpenAI(
    base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("OPENAI_API_KEY", "no-key-yet"),
)

WEATHER_TOOL: FunctionToolParam = {
    "type": "function",
    "function": {
        "name": "getCurrentWeather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}


def weather(arguments: str) -> str:
    """The app's own tool: here, a fixed answer."""
    city = json.loads(arguments or "{}").get("location", "Miami")
    return json.dumps({"location": city, "temperature_c": 27, "sky": "sunny"})


class Printer(AssistantEventHandler):
    """Prints the reply as it streams, and answers the tool calls the run waits for."""

    def on_text_delta(self, delta: TextDelta, snapshot: Text) -> None:
        print(delta.value or "", end="", flush=True)

    def on_text_done(self, text: Text) -> None:
        print()

    def on_event(self, event: object) -> None:
        if getattr(event, "event", "") == "thread.run.requires_action":
            run: Run = event.data  # type: ignore[attr-defined]
            assert run.required_action is not None
            outputs: list[ToolOutput] = [
                {"tool_call_id": call.id, "output": weather(call.function.arguments)}
                for call in run.required_action.submit_tool_outputs.tool_calls
            ]
            print(f"[tool calls answered: {len(outputs)}]")
            with client.beta.threads.runs.submit_tool_outputs_stream(
                thread_id=run.thread_id,
                run_id=run.id,
                tool_outputs=outputs,
                event_handler=Printer(),
            ) as stream:
                stream.until_done()


def main() -> None:
    assistant = client.beta.assistants.create(
        name="Weather bot", model="gpt-4o", tools=[WEATHER_TOOL]
    )
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "What's the weather like in Miami today?"}]
    )
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=Printer()
    ) as stream:
        stream.until_done()


if __name__ == "__main__":
    main()
