// A streamed run with a tool call, through the official Node openai SDK, against the gateway.
//
//   .venv/bin/gateway serve &                    # in another terminal
//   cd examples/node && npm ci && npm start
//
// The built-in model calls getCurrentWeather for the question below; this app answers the
// call with its own output, and the run streams the model's reply. OPENAI_BASE_URL points at
// any gateway; OPENAI_API_KEY is its key, if it has keys.
import OpenAI from 'openai';

const client = new OpenAI({
  baseURL: process.env.OPENAI_BASE_URL ?? 'http://127.0.0.1:8000/v1',
  apiKey: process.env.OPENAI_API_KEY ?? 'no-key-yet',
});

const weatherTool = {
  type: 'function',
  function: {
    name: 'getCurrentWeather',
    description: 'The current weather in a city.',
    parameters: {
      type: 'object',
      properties: { location: { type: 'string' } },
      required: ['location'],
    },
  },
};

// The app's own tool: here, a fixed answer.
function weather(argumentsText) {
  const { location = 'Miami' } = JSON.parse(argumentsText || '{}');
  return JSON.stringify({ location, temperature_c: 27, sky: 'sunny' });
}

// Prints the reply as it streams; resolves with the run as the stream left it.
async function printed(stream) {
  stream.on('textDelta', (delta) => process.stdout.write(delta.value ?? ''));
  stream.on('textDone', () => process.stdout.write('\n'));
  return stream.finalRun();
}

const assistant = await client.beta.assistants.create({
  name: 'Weather bot',
  model: 'gpt-4o',
  tools: [weatherTool],
});
const thread = await client.beta.threads.create({
  messages: [{ role: 'user', content: "What's the weather like in Miami today?" }],
});
let run = await printed(client.beta.threads.runs.stream(thread.id, { assistant_id: assistant.id }));
while (run.status === 'requires_action') {
  const calls = run.required_action.submit_tool_outputs.tool_calls;
  console.log(`[tool calls answered: ${calls.length}]`);
  run = await printed(
    client.beta.threads.runs.submitToolOutputsStream(run.id, {
      thread_id: thread.id,
      tool_outputs: calls.map((call) => ({
        tool_call_id: call.id,
        output: weather(call.function.arguments),
      })),
    }),
  );
}
if (run.status !== 'completed') {
  throw new Error(`the run ended ${run.status}: ${JSON.stringify(run.last_error)}`);
}
