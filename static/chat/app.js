// CodeAct Web conversation page: one ES module, no build step.
//
// The page holds a view of rows (messages, turns) keyed by id. Persisted
// events are upserts carrying the conversation sequence number; deltas carry
// the UTF-16 offset at which their text starts. A gap in either makes the page
// ask the server for everything after the last contiguous sequence number.

const root = document.getElementById("chat");
const transcript = document.getElementById("transcript");
const emptyNote = document.getElementById("empty-transcript");
const input = document.getElementById("message-input");
const form = document.getElementById("composer");
const sendButton = document.getElementById("send-button");
const stopButton = document.getElementById("stop-button");
const hint = document.getElementById("composer-hint");
const connection = document.getElementById("connection");
const titleEl = document.getElementById("conversation-title");
const initial = JSON.parse(document.getElementById("initial-data").textContent);

const conversationId = root.dataset.conversationId;
const messages = new Map(); // id -> {data, el}
const turns = new Map(); // id -> {data, el}
const executions = new Map(); // id -> {data, el, outputs: Map(id -> {data, el, text})}
const files = new Map(); // id -> data
const filesList = document.getElementById("files-list");
const filesCount = document.getElementById("files-count");
const uploadInput = document.getElementById("upload-input");
const csrfToken = document.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";
let lastSeq = 0;
let socket = null;
let attempt = 0;
let resumePending = false;
let pendingText = null; // text of the last user_message, kept until acked
let outbox = null; // a user_message typed while the socket was not open

const ACTIVE = new Set(["queued", "running"]);
const RETRYABLE = new Set(["failed", "interrupted", "stopped"]);

// ---- rendering -------------------------------------------------------------

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function place(node, key) {
  // Keep the transcript ordered by key without rebuilding it.
  node.dataset.key = String(key);
  if (node.parentNode === transcript) node.remove();
  for (const child of transcript.children) {
    if (child.dataset.key !== undefined && Number(child.dataset.key) > key) {
      transcript.insertBefore(node, child);
      return;
    }
  }
  transcript.appendChild(node);
}

const ROLE_NAMES = { user: "You", assistant: "Assistant", notice: "Notice" };

function renderMessage(data) {
  let entry = messages.get(data.id);
  if (!entry) {
    const node = el("article", `msg msg-${data.role}`);
    node.setAttribute("aria-label", ROLE_NAMES[data.role] || data.role);
    node.append(el("div", "msg-role", ROLE_NAMES[data.role] || data.role), el("div", "msg-body"));
    entry = { data, el: node, text: "" };
    messages.set(data.id, entry);
    place(node, data.id * 2);
  }
  const body = entry.el.querySelector(".msg-body");
  const streaming = data.status === "streaming";
  // A snapshot can lag behind deltas already shown; keep the longer prefix.
  if (!(streaming && entry.text.length > data.content.length && entry.text.startsWith(data.content))) {
    entry.text = data.content;
  }
  entry.data = data;
  entry.el.classList.toggle("msg-final", Boolean(data.final));
  body.classList.toggle("streaming", streaming);
  if (data.role === "assistant" && !streaming) {
    body.innerHTML = data.html; // rendered and sanitized on the server
  } else {
    body.textContent = entry.text;
  }
  let note = entry.el.querySelector(".msg-note");
  const noteText = { stopped: "Stopped", interrupted: "Interrupted", failed: "Incomplete" }[data.status];
  if (noteText && data.role === "assistant") {
    if (!note) entry.el.appendChild((note = el("div", "msg-note")));
    note.textContent = noteText;
  } else if (note) note.remove();
  entry.el.hidden = data.role === "assistant" && !streaming && !data.content;
  renderFeedback(entry, data);
}

// ---- feedback on answers -----------------------------------------------------

const feedback = new Map(Object.entries(initial.feedback || {}).map(([id, f]) => [Number(id), f]));

function renderFeedback(entry, data) {
  let box = entry.el.querySelector(".feedback");
  if (data.role !== "assistant" || !data.final || data.status === "streaming") {
    if (box) box.remove();
    return;
  }
  if (!box) {
    box = el("div", "feedback");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", "Rate this answer");
    entry.el.appendChild(box);
  }
  const current = feedback.get(data.id);
  const rateButton = (value, label) => {
    const button = el("button", "btn btn-rate");
    button.appendChild(thumb(value < 0));
    button.type = "button";
    button.title = label;
    button.setAttribute("aria-label", label);
    button.setAttribute("aria-pressed", String(current?.rating === value));
    button.addEventListener("click", () => {
      const same = feedback.get(data.id)?.rating === value;
      saveFeedback(entry, data, same ? null : value, same ? "" : feedback.get(data.id)?.comment || "");
    });
    return button;
  };
  const children = [rateButton(1, "Good answer"), rateButton(-1, "Bad answer")];
  if (current) {
    const comment = el("form");
    const inputBox = el("input");
    inputBox.type = "text";
    inputBox.maxLength = 2000;
    inputBox.value = current.comment || "";
    inputBox.placeholder = current.rating > 0 ? "What was good? (optional)" : "What went wrong? (optional)";
    inputBox.setAttribute("aria-label", "Comment on this answer");
    const save = el("button", "btn btn-small", current.comment ? "Update" : "Send");
    save.type = "submit";
    comment.append(inputBox, save);
    comment.addEventListener("submit", (ev) => {
      ev.preventDefault();
      saveFeedback(entry, data, feedback.get(data.id)?.rating ?? null, inputBox.value);
    });
    children.push(comment);
  }
  box.replaceChildren(...children);
}

const SVG = "http://www.w3.org/2000/svg";

function thumb(down) {
  // Drawn, not an emoji: no emoji font is needed and it follows the text colour.
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("fill", "none");
  svg.setAttribute("stroke", "currentColor");
  svg.setAttribute("stroke-width", "2");
  svg.setAttribute("stroke-linecap", "round");
  svg.setAttribute("stroke-linejoin", "round");
  svg.setAttribute("aria-hidden", "true");
  if (down) svg.style.transform = "rotate(180deg)";
  for (const d of ["M7 10v12", "M15 5.9 14 10h5.8a2 2 0 0 1 1.9 2.6l-2.3 8A2 2 0 0 1 17.5 22H4a2 2 0 0 1-2-2v-8a2 2 0 0 1 2-2h2.8a2 2 0 0 0 1.8-1.1L12 2a3.1 3.1 0 0 1 3 3.9Z"]) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    svg.appendChild(path);
  }
  return svg;
}

async function saveFeedback(entry, data, rating, comment) {
  let result = {};
  try {
    const response = await fetch(`/c/${conversationId}/messages/${data.id}/feedback/`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
      body: JSON.stringify({ rating, comment }),
      credentials: "same-origin",
    });
    result = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(result.error?.message || `HTTP ${response.status}`);
  } catch (error) {
    showError({ message: `Your rating was not saved: ${error.message}` });
    return;
  }
  if (result.feedback) feedback.set(data.id, result.feedback);
  else feedback.delete(data.id);
  renderFeedback(entry, data);
  if (rating !== null) flash(comment ? "Thanks, your feedback was saved." : "Thanks! Add a comment if you like.");
}

function applyDelta(event) {
  const entry = messages.get(event.message_id);
  if (!entry) return requestResume();
  const have = entry.text.length;
  if (event.offset > have) return requestResume();
  const end = event.offset + event.text.length;
  if (end <= have) return; // already shown
  entry.text += event.text.slice(have - event.offset);
  const body = entry.el.querySelector(".msg-body");
  body.classList.add("streaming");
  body.textContent = entry.text;
  entry.el.hidden = false;
  scrollToEnd();
}

// ---- code cells ------------------------------------------------------------

const CELL_STATUS = {
  running: "Running…", ok: "Done", error: "Error", timeout: "Timed out",
  interrupted: "Stopped", died: "Kernel died", lost: "Cut off", failed: "Not run",
};
const ANSI = /\x1b\[[0-9;?]*[ -\/]*[@-~]/g;

function formatDuration(seconds) {
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function copyButton(getText) {
  const button = el("button", "btn btn-small btn-copy", "Copy");
  button.type = "button";
  button.setAttribute("aria-label", "Copy code");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(getText());
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => (button.textContent = "Copy"), 1500);
  });
  return button;
}

function renderExecution(data) {
  let entry = executions.get(data.id);
  if (!entry) {
    const node = el("section", "cell");
    node.setAttribute("role", "region");
    node.setAttribute("aria-label", `Code cell ${data.number}`);
    const code = el("pre", "cell-code code");
    code.appendChild(el("code"));
    node.append(el("div", "cell-head"), code, el("div", "cell-outputs"));
    entry = { data, el: node, outputs: new Map() };
    executions.set(data.id, entry);
    place(node, data.message_id * 2 + 0.5);
  }
  entry.data = data;
  entry.el.dataset.status = data.status;
  const head = entry.el.querySelector(".cell-head");
  const count = data.execution_count ? `In [${data.execution_count}]` : `Cell ${data.number}`;
  const status = el("span", `cell-status status-${data.status}`, CELL_STATUS[data.status] || data.status);
  const timer = el("span", "muted cell-time");
  if (data.status === "running") {
    timer.dataset.since = String(Date.parse(data.started_at));
    tickTimer(timer);
  } else if (data.duration != null) {
    timer.textContent = formatDuration(data.duration);
  }
  const copy = copyButton(() => entry.data.code);
  head.replaceChildren(el("span", "cell-label", count), status, timer, copy);
  if (data.detail && data.status !== "ok" && data.status !== "error") head.appendChild(el("span", "cell-detail", data.detail));
  entry.el.querySelector(".cell-code code").innerHTML = data.code_html; // Pygments-escaped on the server
  const waiting = orphanOutputs.get(data.id);
  if (waiting) {
    orphanOutputs.delete(data.id);
    for (const output of waiting) renderOutput(output);
  }
}

function tickTimer(node) {
  // Server and browser clocks differ a little; never show a negative time.
  const seconds = Math.max(0, (Date.now() - Number(node.dataset.since)) / 1000);
  node.textContent = formatDuration(Math.floor(seconds * 10) / 10);
}

setInterval(() => {
  for (const node of document.querySelectorAll(".cell[data-status=running] .cell-time")) tickTimer(node);
}, 200);

const COLLAPSE_LINES = 40;

function setCollapsible(node, text) {
  // Long text output starts collapsed, with a button to show all of it.
  const lines = text.split("\n").length;
  const long = lines > COLLAPSE_LINES;
  node.classList.toggle("collapsed", long && node.dataset.expanded !== "1");
  let more = node.nextElementSibling?.classList.contains("show-all") ? node.nextElementSibling : null;
  if (long && node.dataset.expanded !== "1") {
    if (!more) {
      more = el("button", "btn btn-small show-all");
      more.type = "button";
      more.addEventListener("click", () => {
        node.dataset.expanded = "1";
        node.classList.remove("collapsed");
        more.remove();
      });
      node.after(more);
    }
    more.textContent = `Show all ${lines} lines`;
  } else if (more) more.remove();
}

// Outputs whose cell is not shown yet. A snapshot lists rows by their last
// change, so a finished cell comes after its outputs.
const orphanOutputs = new Map(); // execution id -> [output data]

function renderOutput(data) {
  const cell = executions.get(data.execution_id);
  if (!cell) {
    const waiting = orphanOutputs.get(data.execution_id) || [];
    orphanOutputs.set(data.execution_id, [...waiting.filter((o) => o.id !== data.id), data]);
    return requestResume();
  }
  let entry = cell.outputs.get(data.id);
  if (!entry) {
    entry = { data, el: el("div", `output output-${data.output_type}`), text: "" };
    entry.el.dataset.index = String(data.index);
    cell.outputs.set(data.id, entry);
    const box = cell.el.querySelector(".cell-outputs");
    const after = [...box.children].find((c) => Number(c.dataset.index) > data.index);
    box.insertBefore(entry.el, after || null);
  }
  entry.data = data;
  const node = entry.el;
  if (data.output_type === "stream") {
    entry.text = data.text;
    node.className = `output output-stream stream-${data.name}`;
    node.textContent = data.text;
    setCollapsible(node, data.text);
  } else if (data.output_type === "error") {
    const text = (data.data.traceback || []).join("\n").replace(ANSI, "") || `${data.data.ename}: ${data.data.evalue}`;
    node.textContent = text;
    setCollapsible(node, text);
  } else if (data.image_url) {
    const img = el("img", "output-image");
    img.src = data.image_url;
    img.alt = data.data["text/plain"] || "Plot";
    const link = el("a");
    link.href = data.image_url;
    link.target = "_blank";
    link.rel = "noopener";
    link.title = "Open full size";
    link.appendChild(img);
    node.replaceChildren(link);
  } else if (data.html) {
    node.className = `output output-${data.output_type} output-html`;
    node.innerHTML = data.html; // reduced to a table allowlist on the server
  } else {
    node.textContent = data.data["text/plain"] || "";
    setCollapsible(node, node.textContent);
  }
}

function applyOutputDelta(event) {
  const cell = executions.get(event.execution_id);
  const entry = cell && cell.outputs.get(event.output_id);
  if (!entry) return requestResume();
  const have = entry.text.length;
  if (event.offset > have) return requestResume();
  const end = event.offset + event.text.length;
  if (end <= have) return;
  entry.text += event.text.slice(have - event.offset);
  entry.el.textContent = entry.text;
  setCollapsible(entry.el, entry.text);
}

// ---- files -----------------------------------------------------------------

function renderFile(data) {
  files.set(data.id, data);
  const items = [...files.values()].sort((a, b) => a.path.localeCompare(b.path));
  filesList.replaceChildren(
    ...items.map((f) => {
      const li = el("li");
      const a = el("a", "", f.path);
      a.href = f.url;
      a.setAttribute("download", "");
      li.append(a, el("span", "muted small", ` ${humanSize(f.size)} · ${f.origin === "upload" ? "uploaded" : "made by code"}`));
      return li;
    }),
  );
  filesCount.textContent = String(files.size);
}

function humanSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

const uploadBox = document.getElementById("upload-progress");
const uploadBar = document.getElementById("upload-bar");
const uploadLabel = document.getElementById("upload-label");

function uploadFiles(list) {
  const tooBig = list.filter((f) => f.size > initial.upload_max_bytes);
  if (tooBig.length) {
    const limit = humanSize(initial.upload_max_bytes);
    showError({ message: `${tooBig.map((f) => f.name).join(", ")} ${tooBig.length === 1 ? "is" : "are"} larger than the ${limit} limit; nothing was uploaded.` });
    return;
  }
  if (list.length > initial.uploads_per_request) {
    showError({ message: `Upload at most ${initial.uploads_per_request} files at a time.` });
    return;
  }
  const body = new FormData();
  for (const file of list) body.append("file", file);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/c/${conversationId}/files/`);
  xhr.setRequestHeader("X-CSRFToken", csrfToken);
  const name = list.length === 1 ? list[0].name : `${list.length} files`;
  uploadBox.hidden = false;
  uploadBar.value = 0;
  uploadLabel.textContent = `Uploading ${name}…`;
  xhr.upload.addEventListener("progress", (ev) => {
    if (ev.lengthComputable) uploadBar.value = Math.round((ev.loaded / ev.total) * 100);
  });
  xhr.addEventListener("load", () => {
    uploadBox.hidden = true;
    let result = {};
    try {
      result = JSON.parse(xhr.responseText);
    } catch {}
    for (const f of result.files || []) renderFile(f);
    if (xhr.status >= 400) showError({ message: result.error?.message || `The upload failed (HTTP ${xhr.status}).` });
    else flash(`Uploaded ${name}. The assistant finds ${list.length === 1 ? "it" : "them"} in its working folder.`);
  });
  xhr.addEventListener("error", () => {
    uploadBox.hidden = true;
    showError({ message: "The upload did not reach the server. Check the connection and try again." });
  });
  xhr.send(body);
}

function turnKey(data) {
  let key = data.user_message_id * 2 + 1;
  for (const { data: m } of messages.values()) {
    if (m.turn_id === data.id) key = Math.max(key, m.id * 2 + 1);
  }
  return key;
}

function renderTurn(data) {
  let entry = turns.get(data.id);
  if (!entry) {
    entry = { data, el: el("div", "turn") };
    turns.set(data.id, entry);
  }
  entry.data = data;
  const node = entry.el;
  node.replaceChildren();
  node.className = "turn";
  node.removeAttribute("role");
  const latest = Math.max(...turns.keys()) === data.id;
  if (ACTIVE.has(data.status)) {
    const replying = [...messages.values()].some((m) => m.data.turn_id === data.id && m.data.status === "streaming");
    if (!replying) {
      const dots = el("div", "thinking");
      dots.setAttribute("aria-label", "Assistant is thinking");
      dots.append(el("span"), el("span"), el("span"));
      node.appendChild(dots);
    }
  } else if ((data.status === "failed" || data.status === "interrupted") && !latest) {
    // Superseded by a later turn: keep the reason, quietly.
    node.className = "turn turn-note";
    node.textContent = `An earlier attempt ${data.status === "failed" ? "failed" : "was interrupted"}: ${data.error}`;
  } else if (data.status === "failed" || data.status === "interrupted") {
    node.className = "turn turn-error";
    node.setAttribute("role", "alert");
    const text = el("p");
    text.append(el("strong", "", data.status === "failed" ? "The reply failed. " : "The reply was interrupted. "), data.error);
    node.appendChild(text);
    if (latest) node.appendChild(retryButton(data.id));
  } else if (data.status === "stopped" && latest) {
    node.appendChild(retryButton(data.id, "Regenerate"));
  }
  place(node, turnKey(data));
}

function retryButton(turnId, label = "Retry") {
  const button = el("button", "btn btn-small", label);
  button.type = "button";
  button.addEventListener("click", () => send({ type: "retry", turn_id: turnId }));
  return button;
}

function applyPersisted(event) {
  if (event.type === "message") {
    renderMessage(event.message);
    const turn = turns.get(event.message.turn_id);
    if (turn) renderTurn(turn.data);
  } else if (event.type === "turn") {
    renderTurn(event.turn);
    // Only the latest turn offers Retry: re-render the others.
    for (const entry of turns.values()) if (entry.data.id !== event.turn.id) renderTurn(entry.data);
  } else if (event.type === "execution") {
    renderExecution(event.execution);
  } else if (event.type === "output") {
    renderOutput(event.output);
  } else if (event.type === "file") {
    renderFile(event.file);
  } else if (event.type === "conversation") {
    if (modelPicker) modelPicker.value = event.conversation.model;
    titleEl.textContent = event.conversation.title;
    document.title = `${event.conversation.title} · CodeAct Web`;
    const link = document.querySelector(`.conv-link[data-conversation-id="${conversationId}"]`);
    if (link) link.textContent = event.conversation.title;
  }
}

// A message for the user under the composer (an error, an upload done) stays for
// a few seconds, whatever else redraws the composer meanwhile.
let hintNote = null;

function flash(text, error = false) {
  hintNote = { text, error, until: Date.now() + 6000 };
  updateComposer();
  setTimeout(updateComposer, 6100);
}

function updateComposer() {
  const active = [...turns.values()].find((t) => ACTIVE.has(t.data.status));
  const open = socket && socket.readyState === WebSocket.OPEN;
  stopButton.hidden = !active;
  sendButton.hidden = Boolean(active);
  sendButton.disabled = !input.value.trim() || Boolean(outbox);
  const note = hintNote && Date.now() < hintNote.until ? hintNote : null;
  hint.classList.toggle("form-error", Boolean(note && note.error));
  if (!open && outbox) hint.textContent = "Not connected yet: your message will be sent as soon as the connection is back.";
  else if (!open) hint.textContent = "Not connected: reconnecting…";
  else if (note) hint.textContent = note.text;
  else if (active) hint.textContent = "The assistant is answering. Press Stop to end the reply early.";
  else hint.textContent = "";
  emptyNote.hidden = messages.size > 0;
}

function scrollToEnd() {
  const nearBottom = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 160;
  if (nearBottom) transcript.scrollTop = transcript.scrollHeight;
}

// ---- events ----------------------------------------------------------------

function handle(event) {
  switch (event.type) {
    case "hello":
      break;
    case "sync":
      resumePending = false;
      for (const e of event.events) applyPersisted(e);
      lastSeq = Math.max(lastSeq, event.last_seq);
      break;
    case "message":
    case "turn":
    case "conversation":
    case "execution":
    case "output":
    case "file":
      if (event.seq > lastSeq + 1) requestResume();
      else lastSeq = Math.max(lastSeq, event.seq);
      applyPersisted(event);
      break;
    case "output_delta":
      if (event.seq > lastSeq + 1) requestResume();
      else lastSeq = Math.max(lastSeq, event.seq);
      applyOutputDelta(event);
      break;
    case "delta":
      applyDelta(event);
      break;
    case "ack":
      pendingText = null;
      break;
    case "deleted":
      window.location.href = "/";
      return;
    case "error":
      showError(event);
      break;
  }
  updateComposer();
  scrollToEnd();
}

function showError(event) {
  if (event.reply_to === "user_message" && pendingText !== null) {
    if (!input.value) input.value = pendingText; // never lose what the user typed
    pendingText = null;
  }
  flash(event.message, true);
}

function requestResume() {
  if (resumePending) return;
  resumePending = true;
  send({ type: "resume", after_seq: lastSeq });
}

function send(frame) {
  if (!socket || socket.readyState !== WebSocket.OPEN) return false;
  socket.send(JSON.stringify(frame));
  return true;
}

function setConnection(state, label) {
  connection.dataset.state = state;
  connection.textContent = label;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/conversations/${conversationId}/`);
  setConnection("connecting", attempt ? "Reconnecting…" : "Connecting…");
  socket.addEventListener("open", () => {
    attempt = 0;
    setConnection("open", "Connected");
    resumePending = false;
    requestResume();
    if (outbox) {
      send(outbox);
      outbox = null;
    }
    updateComposer();
  });
  socket.addEventListener("message", (msg) => {
    try {
      handle(JSON.parse(msg.data));
    } catch (err) {
      console.error("bad frame from server", err);
    }
  });
  socket.addEventListener("close", (ev) => {
    updateComposer();
    if (ev.code === 4404) {
      setConnection("error", "Not available");
      return;
    }
    // Exponential backoff with full jitter, capped at 15 s.
    const delay = Math.random() * Math.min(15000, 500 * 2 ** attempt);
    attempt += 1;
    setConnection("closed", "Offline — retrying");
    setTimeout(connect, delay);
  });
}

// ---- composer ----------------------------------------------------------------

function submit() {
  const text = input.value.trim();
  if (!text) return;
  const clientId = crypto.randomUUID ? crypto.randomUUID() : String(Date.now());
  const frame = { type: "user_message", text, client_id: clientId };
  if (!send(frame)) outbox = frame; // sent as soon as the socket opens
  pendingText = text;
  input.value = "";
  autosize();
  updateComposer();
}

function autosize() {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, window.innerHeight * 0.4)}px`;
}

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  submit();
});
input.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    if (!sendButton.hidden && !sendButton.disabled) submit();
  }
});
input.addEventListener("input", () => {
  autosize();
  updateComposer();
});
stopButton.addEventListener("click", () => send({ type: "stop" }));
// Drag and drop anywhere on the conversation.
const dropZone = document.getElementById("drop-zone");
let dragDepth = 0;
root.addEventListener("dragenter", (ev) => {
  if (![...(ev.dataTransfer?.types || [])].includes("Files")) return;
  dragDepth += 1;
  dropZone.hidden = false;
});
root.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) dropZone.hidden = true;
});
root.addEventListener("dragover", (ev) => ev.preventDefault());
root.addEventListener("drop", (ev) => {
  ev.preventDefault();
  dragDepth = 0;
  dropZone.hidden = true;
  const dropped = [...(ev.dataTransfer?.files || [])];
  if (dropped.length) uploadFiles(dropped);
});

const modelPicker = document.getElementById("model-picker");
if (modelPicker) {
  modelPicker.addEventListener("change", () => {
    if (!send({ type: "set_model", model: modelPicker.value })) showError({ message: "Not connected: the model was not changed." });
  });
}

for (const example of document.querySelectorAll(".example")) {
  example.addEventListener("click", () => {
    input.value = example.dataset.prompt;
    autosize();
    updateComposer();
    input.focus();
  });
}

const filterInput = document.getElementById("conversation-filter");
if (filterInput) {
  filterInput.addEventListener("input", () => {
    const needle = filterInput.value.trim().toLowerCase();
    let shown = 0;
    for (const link of document.querySelectorAll(".conv-link")) {
      const match = !needle || link.textContent.toLowerCase().includes(needle);
      link.hidden = !match;
      shown += match ? 1 : 0;
    }
    document.getElementById("filter-empty").hidden = shown > 0;
  });
}

uploadInput.addEventListener("change", () => {
  if (uploadInput.files.length) uploadFiles([...uploadInput.files]);
  uploadInput.value = "";
});
document.getElementById("delete-form").addEventListener("submit", (ev) => {
  if (!window.confirm("Delete this conversation and everything in it?")) ev.preventDefault();
});

// ---- start -----------------------------------------------------------------

for (const event of initial.events) applyPersisted(event);
lastSeq = initial.last_seq;
updateComposer();
transcript.scrollTop = transcript.scrollHeight;
input.focus();
connect();
