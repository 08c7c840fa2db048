// Drives the gateway with the official Node `openai` SDK; prints one JSON line of what it saw.
// Usage: node roundtrip.mjs <base URL ending in /v1>. Run by tests/test_node_sdk.py.
import OpenAI from 'openai';

const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather',
    parameters: { type: 'object', properties: { city: { type: 'string' } } },
  },
};

// Collects what the stream helpers hand out, so the test checks the SDK's view, not the wire.
function collect(stream) {
  const seen = { events: [], text: '', toolCalls: [] };
  stream
    .on('event', (event) => seen.events.push(event.event))
    .on('textDelta', (delta) => {
      seen.text += delta.value ?? '';
    })
    .on('toolCallCreated', (call) => {
      seen.toolCalls.push({
        id: call.id,
        type: call.type,
        name: call.function?.name ?? null,
        // The SDK emits no toolCallDelta for the delta that creates the call; start from it.
        arguments: call.function?.arguments ?? '',
      });
    })
    .on('toolCallDelta', (delta, snapshot) => {
      const call = seen.toolCalls.find((c) => c.id === snapshot.id) ?? seen.toolCalls.at(-1);
      call.arguments += delta.function?.arguments ?? '';
    });
  return seen;
}

async function main(baseURL) {
  const openai = new OpenAI({ baseURL, apiKey: 'x', maxRetries: 0 });
  const assistant = await openai.beta.assistants.create({ model: 'gpt-4o', tools: [WEATHER] });

  const toolThread = await openai.beta.threads.create({
    messages: [{ role: 'user', content: 'Please call get_weather with {"city": "Paris"}' }],
  });
  const first = openai.beta.threads.runs.stream(toolThread.id, { assistant_id: assistant.id });
  const firstSeen = collect(first);
  const paused = await first.finalRun();
  const required = paused.required_action?.submit_tool_outputs?.tool_calls ?? [];
  if (paused.status !== 'requires_action' || required.length !== 1) {
    throw new Error(`expected one required tool call, got ${JSON.stringify(paused)}`);
  }

  const second = openai.beta.threads.runs.submitToolOutputsStream(paused.id, {
    thread_id: toolThread.id,
    tool_outputs: [{ tool_call_id: required[0].id, output: '{"temp_c": 21}' }],
  });
  const secondSeen = collect(second);
  const finished = await second.finalRun();

  const textThread = await openai.beta.threads.create({
    messages: [{ role: 'user', content: 'hello from node' }],
  });
  const third = openai.beta.threads.runs.stream(textThread.id, { assistant_id: assistant.id });
  const thirdSeen = collect(third);
  const textRun = await third.finalRun();

  return {
    toolRun: {
      ...firstSeen,
      status: paused.status,
      requiredToolCalls: required.map((c) => ({
        id: c.id,
        name: c.function.name,
        arguments: c.function.arguments,
      })),
    },
    continuation: { ...secondSeen, status: finished.status, sameRun: finished.id === paused.id },
    textRun: { ...thirdSeen, status: textRun.status },
  };
}

try {
  const result = await main(process.argv[2]);
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (error) {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
}
