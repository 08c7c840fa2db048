// Assistants Gateway playground. Pick or create an assistant, send messages, and follow each
// run over an EventSource (GET .../runs/{id}/events?token=...) that resumes from the last event
// id it saw: by itself after a drop (Last-Event-ID), or with ?after= when the page reopens it.
"use strict";

const API = "/v1";
const RUN_EVENTS = [
  "thread.run.created", "thread.run.queued", "thread.run.in_progress",
  "thread.run.requires_action", "thread.run.completed", "thread.run.incomplete",
  "thread.run.failed", "thread.run.cancelling", "thread.run.cancelled", "thread.run.expired",
  "thread.run.step.created", "thread.run.step.in_progress", "thread.run.step.delta",
  "thread.run.step.completed", "thread.run.step.failed", "thread.run.step.cancelled",
  "thread.run.step.expired", "thread.message.created", "thread.message.in_progress",
  "thread.message.delta", "thread.message.completed", "thread.message.incomplete",
];
const AT_REST = new Set(["requires_action", "completed", "incomplete", "failed", "cancelled", "expired"]);

const $ = (id) => document.getElementById(id);
const KEY_STORE = "gateway-api-key"; // sessionStorage: this tab only, gone when it closes

const state = {
  threadId: null,
  runId: null,
  source: null,        // the EventSource following the run, while one is open
  lastId: 0,           // the highest event id handled for this run: the resume position
  reconnecting: false, // the next "open" is a reconnect (the browser's or ours)
  reconnects: 0,
  bubbles: new Map(),  // message id -> its text element
  steps: new Map(),    // step id -> {item, status, calls: Map(index -> parts)}
  runItem: null,
};

// --- small helpers ---------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children); // strings become text nodes: server data never becomes markup
  return node;
}

async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) init.headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (err) {
    throw new Error(`${method} ${API}${path} failed: ${err.message}`);
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: reported below */ }
  if (!response.ok) {
    const error = data && data.error;
    const detail = error ? `${error.message}${error.code ? ` (${error.code})` : ""}` : text;
    throw new Error(`${method} ${API}${path}: HTTP ${response.status}: ${detail}`);
  }
  return data;
}

function showError(err) {
  const box = $("error");
  box.textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// An event handler that reports its failure on the page instead of in the console.
const guarded = (fn) => async (event) => {
  if (event && event.type === "submit") event.preventDefault();
  clearError();
  try { await fn(event); } catch (err) { showError(err); }
};

function setStatus(status) {
  $("run-status").textContent = status;
  const active = status !== "idle" && !AT_REST.has(status);
  $("send").disabled = active || status === "requires_action";
}

// --- assistants ------------------------------------------------------------------------

async function loadAssistants(selected) {
  const list = await api("GET", "/assistants?limit=100");
  const select = $("assistant-select");
  const options = list.data.map((a) => new Option(`${a.name || a.id} (${a.model})`, a.id));
  if (options.length === 0) options.push(new Option("No assistants yet: create one", ""));
  select.replaceChildren(...options);
  if (selected) select.value = selected;
}

function parseTools(raw) {
  const text = raw.trim();
  if (!text) return [];
  if (text.startsWith("[") || text.startsWith("{")) {
    let parsed;
    try { parsed = JSON.parse(text); } catch (err) { throw new Error(`Function tools: ${err.message}`); }
    const tools = Array.isArray(parsed) ? parsed : [parsed];
    return tools.map((t) => (t && t.type ? t : { type: "function", function: t }));
  }
  return text.split(/[\s,]+/).filter(Boolean).map((name) => ({ type: "function", function: { name } }));
}

async function createAssistant() {
  const body = { model: $("assistant-model").value.trim(), tools: parseTools($("assistant-tools").value) };
  const name = $("assistant-name").value.trim();
  const instructions = $("assistant-instructions").value.trim();
  if (name) body.name = name;
  if (instructions) body.instructions = instructions;
  const assistant = await api("POST", "/assistants", body);
  await loadAssistants(assistant.id);
}

// --- the conversation ------------------------------------------------------------------

function addBubble(role, messageId, text = "") {
  const body = el("span", { class: "text", "data-testid": `${role}-text` }, text);
  const item = el("li", { class: `bubble ${role}`, "data-testid": `${role}-bubble` },
    el("span", { class: "who" }, role === "user" ? "You" : "Assistant"), body);
  if (messageId) item.dataset.messageId = messageId;
  $("conversation").append(item);
  return body;
}

async function send() {
  const assistantId = $("assistant-select").value;
  const content = $("message").value.trim();
  if (!assistantId) throw new Error("Pick or create an assistant first.");
  if (!content) throw new Error("Type a message first.");
  if (!state.threadId) {
    const thread = await api("POST", "/threads", {});
    state.threadId = thread.id;
    $("thread-id").textContent = thread.id;
  }
  const message = await api("POST", `/threads/${state.threadId}/messages`, { role: "user", content });
  addBubble("user", message.id, content);
  $("message").value = "";
  const run = await api("POST", `/threads/${state.threadId}/runs`, { assistant_id: assistantId });
  startRun(run);
  await follow();
}

function newThread() {
  closeSource();
  Object.assign(state, { threadId: null, runId: null, lastId: 0, runItem: null });
  state.bubbles.clear();
  state.steps.clear();
  $("conversation").replaceChildren();
  $("tool-outputs-form").hidden = true;
  $("thread-id").textContent = "none yet";
  $("run-id").textContent = "none yet";
  $("last-event-id").textContent = "-";
  setStatus("idle");
}

function startRun(run) {
  state.runId = run.id;
  state.lastId = 0;
  state.steps.clear();
  $("run-id").textContent = run.id;
  $("last-event-id").textContent = "-";
  state.runItem = el("ol", { "aria-label": `Steps of run ${run.id}` });
  $("conversation").append(
    el("li", { class: "run", "data-testid": "run" }, `Run ${run.id}`, state.runItem));
  setStatus(run.status);
}

// --- following a run's events ----------------------------------------------------------

function closeSource() {
  if (state.source) state.source.close();
  state.source = null;
  $("drop").disabled = true;
}

// Open the run's event stream, after `after` (an event id) when given.
async function follow(after) {
  closeSource();
  const { url } = await api("POST", `/threads/${state.threadId}/runs/${state.runId}/stream_token`);
  const source = new EventSource(after ? `${url}&after=${after}` : url);
  state.source = source;
  $("drop").disabled = false;
  source.addEventListener("open", () => {
    if (source === state.source && state.reconnecting) markReconnected();
  });
  for (const name of [...RUN_EVENTS, "error", "done"]) {
    source.addEventListener(name, (event) => {
      if (source !== state.source) return; // a late event of a stream we closed
      try { onEvent(source, name, event); } catch (err) { showError(err); }
    });
  }
}

async function drop() {
  if (!state.runId) return;
  closeSource();
  state.reconnecting = true;
  await follow(state.lastId);
}

function markReconnected() {
  state.reconnecting = false;
  state.reconnects += 1;
  const badge = $("reconnected");
  badge.textContent = `Reconnected (${state.reconnects})`;
  badge.dataset.count = String(state.reconnects);
  badge.hidden = false;
}

function onEvent(source, name, event) {
  if (name === "error") {
    // The stream's own `error` events are MessageEvents with data; connection errors are not.
    if (event instanceof MessageEvent && typeof event.data === "string") {
      streamError(JSON.parse(event.data));
    } else if (source.readyState === EventSource.CONNECTING) {
      state.reconnecting = true; // the browser reconnects by itself, sending Last-Event-ID
    } else {
      closeSource();
      showError("The run's event stream closed. Press Drop connection to reopen it.");
    }
    return;
  }
  if (name === "done") { // the run is at rest: without close() the browser would reconnect
    closeSource();
    return;
  }
  const id = Number(event.lastEventId);
  if (id && id <= state.lastId) return; // seen already: never render an event twice
  if (id) state.lastId = id;
  $("last-event-id").textContent = String(state.lastId);
  render(name, JSON.parse(event.data));
}

function streamError(error) {
  showError(`Stream error: ${error.message}${error.code ? ` (${error.code})` : ""}`);
  if (error.code === "replay_unavailable" && error.run) catchUp(error.run).catch(showError);
}

// The log can no longer replay the run: show it as it is now.
async function catchUp(run) {
  const list = await api("GET", `/threads/${state.threadId}/messages?run_id=${run.id}&order=asc`);
  for (const message of list.data) {
    const text = message.content.filter((c) => c.type === "text").map((c) => c.text.value).join("");
    const body = state.bubbles.get(message.id) || addBubble("assistant", message.id);
    body.textContent = text;
    state.bubbles.set(message.id, body);
  }
  renderRun(run);
}

function render(name, data) {
  if (name.startsWith("thread.run.step.")) {
    if (name === "thread.run.step.delta") stepDelta(data);
    else stepStatus(data);
  } else if (name.startsWith("thread.message.")) {
    message(name, data);
  } else {
    renderRun(data);
  }
}

function renderRun(run) {
  setStatus(run.status);
  if (run.status === "requires_action") showToolOutputs(run.required_action.submit_tool_outputs.tool_calls);
  if (run.last_error) showError(`Run ${run.status}: ${run.last_error.message} (${run.last_error.code})`);
}

function step(data) {
  let entry = state.steps.get(data.id);
  if (!entry) {
    const status = el("span", { class: "step-status" });
    const calls = el("ul", { "aria-label": "Tool calls" });
    const kind = data.type === "tool_calls" ? "Tool calls" : "Message";
    const item = el("li", { "data-testid": "step", "data-step-id": data.id }, `${kind}: `, status, calls);
    state.runItem.append(item);
    entry = { status, calls, parts: new Map() };
    state.steps.set(data.id, entry);
  }
  return entry;
}

function toolCall(entry, index) {
  let parts = entry.parts.get(index);
  if (!parts) {
    parts = {
      name: el("strong", { "data-testid": "tool-call-name" }),
      args: el("code", { "data-testid": "tool-call-arguments" }),
      output: el("code", { "data-testid": "tool-call-output" }),
    };
    entry.calls.append(el("li", { class: "tool-call", "data-testid": "tool-call" },
      parts.name, "(", parts.args, ") ", parts.output));
    entry.parts.set(index, parts);
  }
  return parts;
}

function stepStatus(data) {
  const entry = step(data);
  entry.status.textContent = data.status;
  if (data.step_details.type !== "tool_calls") return;
  data.step_details.tool_calls.forEach((call, index) => {
    const parts = toolCall(entry, index);
    if (call.function) {
      parts.name.textContent = call.function.name;
      parts.args.textContent = call.function.arguments;
      if (call.function.output != null) parts.output.textContent = `→ ${call.function.output}`;
    }
  });
}

function stepDelta(data) {
  const details = data.delta.step_details;
  if (!details || details.type !== "tool_calls") return;
  const entry = step({ id: data.id, type: "tool_calls" });
  for (const call of details.tool_calls || []) {
    const parts = toolCall(entry, call.index);
    const fn = call.function || {};
    if (fn.name) parts.name.textContent = fn.name;
    if (fn.arguments) parts.args.textContent += fn.arguments; // the arguments grow as they form
    if (fn.output != null) parts.output.textContent = `→ ${fn.output}`;
  }
}

function message(name, data) {
  let body = state.bubbles.get(data.id);
  if (!body) {
    body = addBubble("assistant", data.id);
    state.bubbles.set(data.id, body);
  }
  if (name === "thread.message.delta") {
    for (const part of data.delta.content || []) {
      if (part.type === "text" && part.text && part.text.value) body.textContent += part.text.value;
    }
  } else if (name === "thread.message.incomplete") {
    body.parentElement.classList.add("incomplete");
  }
}

// --- tool outputs ----------------------------------------------------------------------

function showToolOutputs(calls) {
  const box = $("tool-outputs");
  box.replaceChildren(...calls.map((call) => {
    const id = `output-${call.id}`;
    return el("div", { class: "field" },
      el("label", { for: id }, `Output of ${call.function.name}(${call.function.arguments})`),
      el("input", { id, type: "text", autocomplete: "off", spellcheck: "false",
        "data-testid": "tool-output-input", "data-call-id": call.id }));
  }));
  $("tool-outputs-form").hidden = false;
  const first = box.querySelector("input");
  if (first) first.focus();
}

async function submitToolOutputs() {
  const inputs = [...$("tool-outputs").querySelectorAll("input")];
  const tool_outputs = inputs.map((input) => ({ tool_call_id: input.dataset.callId, output: input.value }));
  const run = await api("POST", `/threads/${state.threadId}/runs/${state.runId}/submit_tool_outputs`,
    { tool_outputs });
  $("tool-outputs-form").hidden = true;
  setStatus(run.status);
  await follow(state.lastId); // the continuation: everything after the requires_action segment
}

// The EventSource cannot send the key: the run's stream token (fetched with it) stands in.
async function useKey() {
  const key = $("api-key").value.trim();
  if (key) sessionStorage.setItem(KEY_STORE, key);
  else sessionStorage.removeItem(KEY_STORE);
  $("api-key").value = "";
  $("api-key").placeholder = key ? "key in use (enter another to replace it)" : "gwk_…";
  clearError();
  await loadAssistants();
}

// --- wiring ----------------------------------------------------------------------------

$("refresh-assistants").addEventListener("click", guarded(() => loadAssistants($("assistant-select").value)));
$("create-assistant-form").addEventListener("submit", guarded(createAssistant));
$("composer").addEventListener("submit", guarded(send));
$("tool-outputs-form").addEventListener("submit", guarded(submitToolOutputs));
$("drop").addEventListener("click", guarded(drop));
$("new-thread").addEventListener("click", guarded(newThread));
$("key-form").addEventListener("submit", guarded(useKey));
loadAssistants().catch(showError);
