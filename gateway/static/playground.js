// Assistants Gateway playground. Pick or create an assistant, send messages, and follow each
// run over an EventSource (GET .../runs/{id}/events?token=...) that resumes from the last event
// id it saw: by itself after a drop (Last-Event-ID), or with ?after= when the page reopens it.
// Files attached to a message are uploaded first and searched with file_search; the run's
// searches show as steps, and the answer's citations as numbered badges over their markers.
// Threads started here are listed (local storage) to reopen; each error shows beside its cause.
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
const FINAL = new Set(["completed", "incomplete", "failed", "cancelled", "expired"]);
const AT_REST = new Set(["requires_action", ...FINAL]);
const SEARCH_TEXT = "step_details.tool_calls[*].file_search.results[*].content";
const EXCERPT_CHARS = 280;

const $ = (id) => document.getElementById(id);
const KEY_STORE = "gateway-api-key"; // sessionStorage: this tab only, gone when it closes
const THREADS_STORE = "gateway-threads"; // localStorage: [{id, title, at}], newest first
const MAX_THREADS = 50;
const TITLE_CHARS = 60;
const MAX_MESSAGES = 1000; // drawn when a thread is reopened

const state = {
  threadId: null,
  runId: null,
  source: null,        // the EventSource following the run, while one is open
  lastId: 0,           // the highest event id handled for this run: the resume position
  reconnecting: false, // the next "open" is a reconnect (the browser's or ours)
  reconnects: 0,
  status: "idle",
  bubbles: new Map(),  // message id -> {id, body, sources, parts: [{value, annotations}]}
  steps: new Map(),    // step id -> {item, status, calls: Map(index -> parts)}
  runItem: null,
  attachments: [],     // files for the next message: {file, fileId (once uploaded), item, ...}
  fileNames: new Map(), // file id -> file name, from uploads and search results, for citations
  assistants: new Map(), // assistant id -> its name, for the replies' headings
};

// --- small helpers ---------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children); // strings become text nodes: server data never becomes markup
  return node;
}

function headers() {
  const result = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

// A refusal from the gateway: its message, and the HTTP status to tell where it belongs.
class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// A response body as JSON, or an ApiError carrying the gateway's message when it is a refusal.
function reply(method, path, status, text) {
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: reported below */ }
  if (status < 200 || status > 299) {
    const error = data && data.error;
    const detail = error ? `${error.message}${error.code ? ` (${error.code})` : ""}` : text;
    throw new ApiError(`${method} ${API}${path}: HTTP ${status}: ${detail}`, status);
  }
  return data;
}

async function api(method, path, body) {
  const init = { method, headers: headers() };
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
  return reply(method, path, response.status, await response.text());
}

// POST /files as multipart: XMLHttpRequest rather than fetch, as only it reports upload progress.
function upload(file, purpose, onProgress) {
  const path = "/files";
  const form = new FormData();
  form.append("purpose", purpose);
  form.append("file", file, file.name);
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", API + path);
    for (const [name, value] of Object.entries(headers())) request.setRequestHeader(name, value);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && event.total) onProgress(event.loaded / event.total);
    });
    request.addEventListener("load", () => {
      try { resolve(reply("POST", path, request.status, request.responseText)); } catch (err) { reject(err); }
    });
    for (const failure of ["error", "abort", "timeout"]) {
      request.addEventListener(failure, () => reject(new Error(`POST ${API}${path} failed: ${failure}`)));
    }
    request.send(form);
  });
}

// Errors show beside what failed: `where` names the box (key-error, create-error, run-error...).
// A refused key (401) shows beside the key field, whatever was being done.
function showError(where, err) {
  const box = $(err instanceof ApiError && err.status === 401 ? "key-error" : where);
  box.textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
}

function clearError(where) {
  $(where).hidden = true;
  $(where).textContent = "";
}

const reportTo = (where) => (err) => showError(where, err);

// An event handler that reports its failure in the box `where` instead of in the console.
const guarded = (where, fn) => async (event) => {
  if (event && event.type === "submit") event.preventDefault();
  clearError(where);
  try { await fn(event); } catch (err) { showError(where, err); }
};

function setStatus(status) {
  state.status = status;
  $("run-status").textContent = status;
  const active = status !== "idle" && !AT_REST.has(status);
  $("send").disabled = active || status === "requires_action";
  // A run not yet at rest (queued, in_progress, requires_action) can be cancelled.
  $("cancel-run").disabled = !(active || status === "requires_action") || status === "cancelling";
}

async function cancelRun() {
  if (!state.threadId || !state.runId) return;
  const run = await api("POST", `/threads/${state.threadId}/runs/${state.runId}/cancel`);
  setStatus(run.status);
}

// Whether the reader follows the conversation: its newest entry is in view, or just below it
// (not when they scrolled up to read something earlier).
function following() {
  const last = $("conversation").lastElementChild;
  return !last || last.getBoundingClientRect().bottom <= window.innerHeight + 160;
}

// Bring the newest entry into view, when the reader was following before it changed.
function scrollToNewest(follow = true) {
  const last = $("conversation").lastElementChild;
  if (last && follow) last.scrollIntoView({ block: "nearest" });
}

// --- assistants ------------------------------------------------------------------------

async function loadAssistants(selected) {
  const list = await api("GET", "/assistants?limit=100");
  clearError("assistants-error");
  clearError("key-error");
  const select = $("assistant-select");
  const options = list.data.map((a) => {
    state.assistants.set(a.id, a.name || "");
    const option = new Option(assistantLabel(a), a.id);
    option.title = a.id;
    return option;
  });
  if (options.length === 0) options.push(new Option("No assistants yet: create one", ""));
  select.replaceChildren(...options);
  if (selected) select.value = selected;
}

// "Travel helper · gpt-4o", or for an unnamed one "Unnamed · gpt-4o · created 14:02 · …a1b2c3".
function assistantLabel(a) {
  if (a.name) return `${a.name} · ${a.model}`;
  const created = new Date(a.created_at * 1000);
  const when = created.toDateString() === new Date().toDateString()
    ? created.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : created.toLocaleDateString();
  return `Unnamed · ${a.model} · created ${when} · …${a.id.slice(-6)}`;
}

function assistantName(assistantId) {
  return (assistantId && state.assistants.get(assistantId)) || "Assistant";
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
  const tools = parseTools($("assistant-tools").value);
  if ($("assistant-file-search").checked && !tools.some((t) => t.type === "file_search")) {
    tools.push({ type: "file_search" });
  }
  const body = { model: $("assistant-model").value.trim(), tools };
  const name = $("assistant-name").value.trim();
  const instructions = $("assistant-instructions").value.trim();
  if (name) body.name = name;
  if (instructions) body.instructions = instructions;
  const assistant = await api("POST", "/assistants", body);
  await loadAssistants(assistant.id);
}

// --- the conversation ------------------------------------------------------------------

function addBubble(role, messageId, text = "", files = [], who = "You") {
  const body = el("span", { class: "text", "data-testid": `${role}-text` }, text);
  const sources = el("p", { class: "sources", "data-testid": "sources", hidden: "" }); // cited files
  const item = el("li", { class: `bubble ${role}`, "data-testid": `${role}-bubble` },
    el("span", { class: "who", "data-testid": "who" }, who), body);
  if (role === "assistant") item.append(sources);
  if (files.length) {
    item.append(el("span", { class: "files", "data-testid": "message-files" }, `Attached: ${files.join(", ")}`));
  }
  if (messageId) item.dataset.messageId = messageId;
  $("conversation").append(item);
  return { id: messageId, body, sources, parts: [] };
}

async function send() {
  const assistantId = $("assistant-select").value;
  const content = $("message").value.trim();
  if (!assistantId) throw new Error("Pick or create an assistant first.");
  if (!content) throw new Error("Type a message first.");
  const files = state.attachments.map((a) => a.file.name);
  let fileIds;
  try {
    fileIds = await uploadAttachments();
  } catch (err) {
    showError("attach-error", err); // beside the file input: the message waits for a retry or a removal
    return;
  }
  if (!state.threadId) {
    const thread = await api("POST", "/threads", {});
    state.threadId = thread.id;
    $("thread-id").textContent = thread.id;
  }
  rememberThread(state.threadId, content);
  const body = { role: "user", content };
  if (fileIds.length) body.attachments = fileIds.map((file_id) => ({ file_id, tools: [{ type: "file_search" }] }));
  const message = await api("POST", `/threads/${state.threadId}/messages`, body);
  addBubble("user", message.id, content, files);
  scrollToNewest();
  $("message").value = "";
  state.attachments = [];
  showAttached();
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
  for (const where of ["run-error", "composer-error", "tool-outputs-error", "attach-error"]) clearError(where);
  setStatus("idle");
  showThreads();
}

function startRun(run) {
  state.runId = run.id;
  state.lastId = 0;
  state.steps.clear();
  clearError("run-error");
  $("run-id").textContent = run.id;
  $("last-event-id").textContent = "-";
  state.runItem = el("ol", { "aria-label": `Steps of run ${run.id}` });
  $("conversation").append(
    el("li", { class: "run", "data-testid": "run" }, `Run ${run.id}`, state.runItem));
  setStatus(run.status);
}

// --- threads kept in this browser ------------------------------------------------------

function savedThreads() {
  try {
    const list = JSON.parse(localStorage.getItem(THREADS_STORE) || "[]");
    return Array.isArray(list) ? list.filter((t) => t && typeof t.id === "string") : [];
  } catch {
    return []; // unreadable: start a fresh list
  }
}

function saveThreads(list) {
  localStorage.setItem(THREADS_STORE, JSON.stringify(list.slice(0, MAX_THREADS)));
  showThreads();
}

// Put the thread first in the list; a new entry takes its title from its first message.
function rememberThread(id, firstMessage) {
  const list = savedThreads();
  const known = list.find((t) => t.id === id);
  const title = known ? known.title : firstMessage.replace(/\s+/g, " ").trim().slice(0, TITLE_CHARS);
  saveThreads([{ id, title, at: Date.now() }, ...list.filter((t) => t.id !== id)]);
}

function forgetThread(id) {
  saveThreads(savedThreads().filter((t) => t.id !== id));
}

function showThreads() {
  const items = savedThreads().map((t) => {
    const label = t.title || t.id;
    const open = el("button", { type: "button", class: "thread-open", title: t.id,
      "data-testid": "thread-open" }, label);
    const forget = el("button", { type: "button", class: "remove", "aria-label": `Forget ${label}` }, "Forget");
    open.addEventListener("click", guarded("threads-error", () => openThread(t.id)));
    forget.addEventListener("click", guarded("threads-error", () => forgetThread(t.id)));
    const when = el("small", { class: "when" }, new Date(t.at).toLocaleString());
    const item = el("li", { "data-testid": "thread", "data-thread-id": t.id }, open, when, forget);
    if (t.id === state.threadId) item.setAttribute("aria-current", "true");
    return item;
  });
  $("threads").replaceChildren(...items);
  $("threads-empty").hidden = items.length > 0;
}

// Draw a thread as the gateway keeps it; a run still going on is followed from its first event.
async function openThread(id) {
  let thread;
  try {
    thread = await api("GET", `/threads/${id}`);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
    forgetThread(id);
    throw new Error(`Thread ${id} is not there (deleted, or another key's project): removed from the list.`);
  }
  const [messages, runs] = await Promise.all([allMessages(id), api("GET", `/threads/${id}/runs?limit=1`)]);
  newThread();
  state.threadId = thread.id;
  $("thread-id").textContent = thread.id;
  const run = runs.data[0];
  const live = Boolean(run) && !FINAL.has(run.status);
  for (const m of messages) {
    if (live && m.run_id === run.id) continue; // the run's replay below draws these
    showStoredMessage(m);
  }
  if (run && [...$("assistant-select").options].some((o) => o.value === run.assistant_id)) {
    $("assistant-select").value = run.assistant_id;
  }
  showThreads();
  if (!run) return;
  startRun(run);
  if (live) {
    await follow();
  } else {
    const steps = await api("GET", `/threads/${id}/runs/${run.id}/steps?order=asc&limit=100`);
    for (const s of steps.data) stepStatus(s);
    renderRun(run);
  }
  scrollToNewest();
}

async function allMessages(threadId) {
  const found = [];
  let after = "";
  while (found.length < MAX_MESSAGES) {
    const page = await api("GET", `/threads/${threadId}/messages?order=asc&limit=100${after}`);
    found.push(...page.data);
    if (!page.has_more || page.data.length === 0) break;
    after = `&after=${page.last_id}`;
  }
  return found;
}

function showStoredMessage(m) {
  if (m.role === "user") {
    const text = (m.content || []).filter((c) => c.type === "text").map((c) => c.text.value).join("\n");
    const files = (m.attachments || []).map((a) => state.fileNames.get(a.file_id) || a.file_id);
    addBubble("user", m.id, text, files);
    return;
  }
  const entry = bubble(m.id, m.assistant_id);
  settle(entry, m);
  if (m.status === "incomplete") entry.body.parentElement.classList.add("incomplete");
}

// --- attachments -----------------------------------------------------------------------

function pickFiles() {
  const input = $("attach-files");
  for (const file of input.files) {
    const same = (a) => a.file.name === file.name && a.file.size === file.size
      && a.file.lastModified === file.lastModified;
    if (!state.attachments.some(same)) state.attachments.push(attachment(file));
  }
  input.value = ""; // so that a file removed from the list can be picked again
  clearError("attach-error");
  showAttached();
}

function attachment(file) {
  const progress = el("progress", { max: "1", value: "0", "aria-label": `Upload of ${file.name}`, hidden: "" });
  const note = el("span", { class: "note", "data-testid": "attached-status" });
  const remove = el("button", { type: "button", class: "remove", "aria-label": `Remove ${file.name}` }, "Remove");
  const item = el("li", { "data-testid": "attached-file" },
    el("span", { class: "file-name" }, file.name), el("span", { class: "size" }, size(file.size)),
    progress, note, remove);
  const entry = { file, fileId: null, item, progress, note, remove };
  remove.addEventListener("click", () => {
    state.attachments = state.attachments.filter((a) => a !== entry);
    clearError("attach-error");
    showAttached();
    $("attach-files").focus();
  });
  return entry;
}

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  return bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KB` : `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function showAttached() {
  $("attached").replaceChildren(...state.attachments.map((a) => a.item));
}

// Upload the attached files not uploaded yet (a retry skips those that made it); their ids.
async function uploadAttachments() {
  clearError("attach-error");
  $("send").disabled = true;
  $("attach-files").disabled = true;
  try {
    for (const entry of state.attachments) {
      if (entry.fileId) continue;
      entry.remove.disabled = true;
      entry.progress.hidden = false;
      entry.progress.value = 0;
      entry.note.textContent = "uploading…";
      try {
        const file = await upload(entry.file, "assistants", (done) => { entry.progress.value = done; });
        entry.fileId = file.id;
        state.fileNames.set(file.id, file.filename);
        entry.progress.value = 1;
        entry.note.textContent = "uploaded";
      } catch (err) {
        entry.progress.hidden = true;
        entry.note.textContent = "failed";
        throw new Error(`Uploading ${entry.file.name}: ${err.message}`);
      } finally {
        entry.remove.disabled = false;
      }
    }
  } finally {
    $("attach-files").disabled = false;
    setStatus(state.status);
  }
  return state.attachments.map((a) => a.fileId);
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
      try { onEvent(source, name, event); } catch (err) { showError("run-error", err); }
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
      showError("run-error", "The run's event stream closed. Press Drop connection to reopen it.");
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
  const follow = following();
  render(name, JSON.parse(event.data));
  scrollToNewest(follow);
}

function streamError(error) {
  showError("run-error", `Stream error: ${error.message}${error.code ? ` (${error.code})` : ""}`);
  if (error.code === "replay_unavailable" && error.run) catchUp(error.run).catch(reportTo("run-error"));
}

// The log can no longer replay the run: show it as it is now.
async function catchUp(run) {
  const list = await api("GET", `/threads/${state.threadId}/messages?run_id=${run.id}&order=asc`);
  for (const message of list.data) settle(bubble(message.id, message.assistant_id), message);
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
  if (run.last_error) showError("run-error", `Run ${run.status}: ${run.last_error.message} (${run.last_error.code})`);
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

// A file_search call: "Searched files" and its results (file, score, and a folded excerpt).
function fileSearch(entry, index) {
  let parts = entry.parts.get(index);
  if (!parts) {
    parts = {
      summary: el("span", { class: "search-summary" }, "searching…"),
      results: el("ul", { "aria-label": "Search results" }),
    };
    entry.calls.append(el("li", { class: "file-search", "data-testid": "file-search" },
      el("strong", {}, "Searched files"), " ", parts.summary, parts.results));
    entry.parts.set(index, parts);
  }
  return parts;
}

function showResults(parts, results, done) {
  if (!results) return;
  if (results.length === 0) {
    parts.summary.textContent = done ? "nothing found" : "searching…";
    parts.results.replaceChildren();
    return;
  }
  parts.summary.textContent = `${results.length} result${results.length === 1 ? "" : "s"}`;
  parts.results.replaceChildren(...results.map(searchResult));
}

function searchResult(result) {
  state.fileNames.set(result.file_id, result.file_name);
  const score = typeof result.score === "number" ? result.score.toFixed(2) : "?";
  const item = el("li", { class: "search-result", "data-testid": "search-result" },
    el("span", { class: "file-name", title: result.file_id }, result.file_name), " ",
    el("span", { class: "score", title: "Relevance, from 0 to 1" }, `score ${score}`));
  const text = (result.content || []).filter((c) => c.type === "text").map((c) => c.text).join(" ");
  if (text.trim()) {
    item.append(el("details", {}, el("summary", {}, "Excerpt"),
      el("p", { class: "excerpt", "data-testid": "search-excerpt" }, excerpt(text))));
  }
  return item;
}

function excerpt(text) {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length <= EXCERPT_CHARS ? flat : `${flat.slice(0, EXCERPT_CHARS - 1).trimEnd()}…`;
}

// A step's results carry their text only when asked for: fetch it once the search is done.
async function loadExcerpts(data, entry) {
  const include = `include[]=${encodeURIComponent(SEARCH_TEXT)}`;
  const full = await api("GET", `/threads/${data.thread_id}/runs/${data.run_id}/steps/${data.id}?${include}`);
  full.step_details.tool_calls.forEach((call, index) => {
    if (call.type === "file_search") showResults(fileSearch(entry, index), call.file_search.results, true);
  });
}

function stepStatus(data) {
  const entry = step(data);
  entry.status.textContent = data.status;
  if (data.step_details.type !== "tool_calls") return;
  let searched = false;
  data.step_details.tool_calls.forEach((call, index) => {
    if (call.type === "file_search") {
      const results = call.file_search && call.file_search.results;
      showResults(fileSearch(entry, index), results, data.status !== "in_progress");
      searched = searched || Boolean(results && results.length);
      return;
    }
    const parts = toolCall(entry, index);
    if (call.function) {
      parts.name.textContent = call.function.name;
      parts.args.textContent = call.function.arguments;
      if (call.function.output != null) parts.output.textContent = `→ ${call.function.output}`;
    }
  });
  if (searched && data.status === "completed") loadExcerpts(data, entry).catch(reportTo("run-error"));
}

function stepDelta(data) {
  const details = data.delta.step_details;
  if (!details || details.type !== "tool_calls") return;
  const entry = step({ id: data.id, type: "tool_calls" });
  for (const call of details.tool_calls || []) {
    if (call.type === "file_search" || call.file_search) {
      showResults(fileSearch(entry, call.index), call.file_search && call.file_search.results, false);
      continue;
    }
    const parts = toolCall(entry, call.index);
    const fn = call.function || {};
    if (fn.name) parts.name.textContent = fn.name;
    if (fn.arguments) parts.args.textContent += fn.arguments; // the arguments grow as they form
    if (fn.output != null) parts.output.textContent = `→ ${fn.output}`;
  }
}

function bubble(messageId, assistantId) {
  let entry = state.bubbles.get(messageId);
  if (!entry) {
    entry = addBubble("assistant", messageId, "", [], assistantName(assistantId));
    state.bubbles.set(messageId, entry);
  }
  return entry;
}

function message(name, data) {
  const entry = bubble(data.id, data.assistant_id);
  if (name === "thread.message.delta") {
    for (const part of data.delta.content || []) {
      if (part.type !== "text" || !part.text) continue;
      const index = part.index == null ? 0 : part.index;
      const text = entry.parts[index] || (entry.parts[index] = { value: "", annotations: [] });
      if (part.text.value) text.value += part.text.value;
      if (part.text.annotations) text.annotations.push(...part.text.annotations);
    }
    showText(entry);
  } else if (name === "thread.message.completed" || name === "thread.message.incomplete") {
    settle(entry, data);
    if (name === "thread.message.incomplete") entry.body.parentElement.classList.add("incomplete");
  }
}

// The message as the gateway keeps it: its final text, and annotations indexing into it.
function settle(entry, data) {
  entry.parts = (data.content || []).map((c) => (c.type === "text"
    ? { value: c.text.value, annotations: c.text.annotations || [] } : null));
  showText(entry);
}

// --- citations -------------------------------------------------------------------------

// The text with each file citation's marker (【0†cats.md】) replaced by a badge [n], n counting
// the cited files in order; then "Sources:" names those files. Text nodes only: never markup.
function showText(entry) {
  const nodes = [];
  const cited = new Map(); // file id -> {number, name}
  for (const part of entry.parts) {
    if (!part) continue;
    let at = 0;
    for (const [start, end, annotation] of spans(part.value, part.annotations)) {
      nodes.push(part.value.slice(at, start), badge(entry, cited, annotation));
      at = end;
    }
    nodes.push(part.value.slice(at));
  }
  entry.body.replaceChildren(...nodes.filter((node) => node !== ""));
  const sources = [...cited.entries()].map(([fileId, { number, name }]) =>
    el("span", { class: "source", id: sourceId(entry, number), title: `[${number}] ${fileId}`,
      "data-testid": "source" }, name));
  entry.sources.replaceChildren(...(sources.length ? ["Sources: ", ...between(sources, ", ")] : []));
  entry.sources.hidden = sources.length === 0;
}

function between(items, separator) {
  return items.flatMap((item, i) => (i ? [separator, item] : [item]));
}

// Where each file citation sits in `text`, in order, as [start, end, annotation].
function spans(text, annotations) {
  const citations = annotations.filter((a) => a.type === "file_citation" && a.file_citation)
    .sort((a, b) => a.start_index - b.start_index);
  const found = [];
  let from = 0;
  for (const annotation of citations) {
    const at = span(text, annotation, from);
    if (!at) continue; // its marker is not (or not yet) in the text
    found.push([...at, annotation]);
    from = at[1];
  }
  return found;
}

function span(text, annotation, from) {
  const { start_index: start, end_index: end, text: marker } = annotation;
  if (!marker) return start >= from && start < end && end <= text.length ? [start, end] : null;
  if (start >= from && text.slice(start, end) === marker) return [start, end];
  // The gateway counts code points; JavaScript counts UTF-16 units, more past an astral character.
  const head = Array.from(text).slice(0, start).join("").length;
  if (head >= from && text.startsWith(marker, head)) return [head, head + marker.length];
  const at = text.indexOf(marker, from);
  return at < 0 ? null : [at, at + marker.length];
}

function badge(entry, cited, annotation) {
  const fileId = annotation.file_citation.file_id;
  if (!cited.has(fileId)) cited.set(fileId, { number: cited.size + 1, name: citedName(annotation) });
  const { number, name } = cited.get(fileId);
  return el("sup", { class: "cite" }, el("a", { href: `#${sourceId(entry, number)}`, title: name,
    "aria-label": `source ${number}: ${name}`, "data-testid": "citation" }, `[${number}]`));
}

function citedName(annotation) {
  const fileId = annotation.file_citation.file_id;
  const label = /†([^】]+)】$/.exec(annotation.text || "");
  return state.fileNames.get(fileId) || (label && label[1]) || fileId;
}

function sourceId(entry, number) {
  return `source-${entry.id}-${number}`;
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
  clearError("assistants-error");
  await loadAssistants();
}

// --- wiring ----------------------------------------------------------------------------

$("refresh-assistants").addEventListener("click",
  guarded("assistants-error", () => loadAssistants($("assistant-select").value)));
$("create-assistant-form").addEventListener("submit", guarded("create-error", createAssistant));
$("composer").addEventListener("submit", guarded("composer-error", send));
$("attach-files").addEventListener("change", guarded("attach-error", pickFiles));
$("tool-outputs-form").addEventListener("submit", guarded("tool-outputs-error", submitToolOutputs));
$("drop").addEventListener("click", guarded("run-error", drop));
$("cancel-run").addEventListener("click", guarded("run-error", cancelRun));
$("new-thread").addEventListener("click", guarded("run-error", newThread));
$("key-form").addEventListener("submit", guarded("key-error", useKey));
showThreads();
loadAssistants().catch(reportTo("assistants-error"));
