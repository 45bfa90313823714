// Messages and turns: the conversation as the user sees it. A streaming reply
// grows by deltas (placed by their UTF-16 offset) and is replaced by the
// server's HTML when it completes.

import { el, place, scrollToEnd } from "./dom.js";
import { renderFeedback } from "./feedback.js";
import { requestResume, send } from "./socket.js";
import { ACTIVE, state } from "./state.js";

const NOTES = { stopped: "Stopped", interrupted: "Interrupted", failed: "Incomplete" };

function roleName(role) {
  return state.labels.roles[role] || role;
}

function messageEntry(data) {
  let entry = state.messages.get(data.id);
  if (!entry) {
    const node = el("article", `msg msg-${data.role}`);
    node.setAttribute("aria-label", roleName(data.role));
    node.append(el("div", "msg-role", roleName(data.role)), el("div", "msg-body"));
    entry = { data, el: node, text: "" };
    state.messages.set(data.id, entry);
    place(node, data.id * 2);
  }
  return entry;
}

export function renderMessage(data) {
  const entry = messageEntry(data);
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
  const noteText = NOTES[data.status];
  if (noteText && data.role === "assistant") {
    if (!note) entry.el.appendChild((note = el("div", "msg-note")));
    note.textContent = noteText;
  } else if (note) note.remove();
  entry.el.hidden = data.role === "assistant" && !streaming && !data.content;
  renderFeedback(entry, data);
  const turn = state.turns.get(data.turn_id);
  if (turn) renderTurn(turn.data);
}

export function applyDelta(event) {
  const entry = state.messages.get(event.message_id);
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
  for (const { data: m } of state.messages.values()) {
    if (m.turn_id === data.id) key = Math.max(key, m.id * 2 + 1);
  }
  return key;
}

function retryButton(turnId, label = "Retry") {
  const button = el("button", "btn btn-small", label);
  button.type = "button";
  button.addEventListener("click", () => send({ type: "retry", turn_id: turnId }));
  return button;
}

function thinking() {
  const dots = el("div", "thinking");
  dots.setAttribute("aria-label", "Assistant is thinking");
  dots.append(el("span"), el("span"), el("span"));
  return dots;
}

function failure(node, data, latest) {
  const failed = data.status === "failed";
  if (!latest) {
    // Superseded by a later turn: keep the reason, quietly.
    node.className = "turn turn-note";
    node.textContent = `An earlier attempt ${failed ? "failed" : "was interrupted"}: ${data.error}`;
    return;
  }
  node.className = "turn turn-error";
  node.setAttribute("role", "alert");
  const text = el("p");
  text.append(el("strong", "", failed ? "The reply failed. " : "The reply was interrupted. "), data.error);
  node.append(text, retryButton(data.id));
}

export function renderTurn(data) {
  let entry = state.turns.get(data.id);
  if (!entry) {
    entry = { data, el: el("div", "turn") };
    state.turns.set(data.id, entry);
  }
  entry.data = data;
  const node = entry.el;
  node.replaceChildren();
  node.className = "turn";
  node.removeAttribute("role");
  const latest = Math.max(...state.turns.keys()) === data.id;
  if (ACTIVE.has(data.status)) {
    const replying = [...state.messages.values()].some((m) => m.data.turn_id === data.id && m.data.status === "streaming");
    if (!replying) node.appendChild(thinking());
  } else if (data.status === "failed" || data.status === "interrupted") {
    failure(node, data, latest);
  } else if (data.status === "stopped" && latest) {
    node.appendChild(retryButton(data.id, "Regenerate"));
  }
  place(node, turnKey(data));
}

// A turn changed: draw it, and the others again (only the latest offers Retry).
export function applyTurn(data) {
  renderTurn(data);
  for (const entry of state.turns.values()) if (entry.data.id !== data.id) renderTurn(entry.data);
}
