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

function renderMessage(data) {
  let entry = messages.get(data.id);
  if (!entry) {
    const node = el("article", `msg msg-${data.role}`);
    node.setAttribute("aria-label", data.role === "user" ? "You" : "Assistant");
    node.append(el("div", "msg-role", data.role === "user" ? "You" : "Assistant"), el("div", "msg-body"));
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
  } else if (event.type === "conversation") {
    titleEl.textContent = event.conversation.title;
    document.title = `${event.conversation.title} · CodeAct Web`;
    const link = document.querySelector(`.conv-link[data-conversation-id="${conversationId}"]`);
    if (link) link.textContent = event.conversation.title;
  }
}

function updateComposer() {
  const active = [...turns.values()].find((t) => ACTIVE.has(t.data.status));
  const open = socket && socket.readyState === WebSocket.OPEN;
  stopButton.hidden = !active;
  sendButton.hidden = Boolean(active);
  sendButton.disabled = !input.value.trim() || Boolean(outbox);
  if (!open && outbox) hint.textContent = "Not connected yet: your message will be sent as soon as the connection is back.";
  else if (!open) hint.textContent = "Not connected: reconnecting…";
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
      if (event.seq > lastSeq + 1) requestResume();
      else lastSeq = Math.max(lastSeq, event.seq);
      applyPersisted(event);
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
  hint.textContent = event.message;
  hint.classList.add("form-error");
  setTimeout(() => hint.classList.remove("form-error"), 6000);
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
