// Messages and turns: the conversation as the user sees it. A streaming reply
// grows by deltas (placed by their UTF-16 offset) and is replaced by the
// server's HTML when it completes.

import { addRunButtons, markCellsOf, userCodeBlocks } from "./code.js";
import { flash } from "./composer.js";
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
  entry.el.classList.toggle("msg-cell", Boolean(data.cell));
  body.classList.toggle("streaming", streaming);
  if (data.role === "assistant" && !streaming) {
    body.innerHTML = data.html; // rendered and sanitized on the server
    addRunButtons(body);
  } else if (data.role === "user" && data.cell) {
    // A cell the user ran: its code cell below shows it; this shows only until it starts.
    const code = el("pre", "code");
    code.appendChild(el("code", "", data.content));
    body.replaceChildren(el("p", "muted small", "Waiting to run…"), code);
  } else if (data.role === "user") {
    body.replaceChildren(...userCodeBlocks(entry.text)); // as typed, with its code blocks runnable
  } else {
    body.textContent = entry.text;
  }
  superseded(entry, data);
  let note = entry.el.querySelector(".msg-note");
  const noteText = NOTES[data.status];
  if (noteText && data.role === "assistant") {
    if (!note) entry.el.appendChild((note = el("div", "msg-note")));
    note.textContent = noteText;
  } else if (note) note.remove();
  const cellShown = data.cell && [...state.executions.values()].some((c) => c.data.message_id === data.id);
  entry.el.hidden = (data.role === "assistant" && !streaming && !data.content) || cellShown;
  renderFeedback(entry, data);
  const turn = state.turns.get(data.turn_id);
  if (turn) renderTurn(turn.data);
}

// An earlier version of a question and its answer, kept in the record: dimmed, and
// marked once, on the question, as not sent to the assistant any more.
function superseded(entry, data) {
  entry.el.classList.toggle("superseded", Boolean(data.superseded));
  let label = entry.el.querySelector(".superseded-label");
  if (data.superseded && data.role === "user" && !data.cell) {
    if (!label) {
      label = el("div", "superseded-label", "Earlier version: replaced by your edit or a new answer, and no longer sent to the assistant.");
      entry.el.appendChild(label);
    }
  } else if (label) label.remove();
  markCellsOf(data.id, Boolean(data.superseded));
}

// The last question can be edited and its answer regenerated: the buttons move to
// whichever rows are last, after every change.
export function updateMessageActions() {
  for (const node of document.querySelectorAll(".msg-actions")) node.remove();
  const busy = [...state.turns.values()].some((t) => ACTIVE.has(t.data.status));
  if (busy) return;
  const live = [...state.messages.values()].filter((m) => !m.data.superseded).sort((a, b) => a.data.id - b.data.id);
  const question = live.filter((m) => m.data.role === "user" && !m.data.cell).at(-1);
  if (!question) return;
  const edit = el("button", "btn btn-small btn-quiet", "Edit");
  edit.type = "button";
  edit.setAttribute("aria-label", "Edit your last prompt");
  edit.title = "Edit and send again (Up arrow in an empty message box). The earlier answer is kept, marked as replaced.";
  edit.addEventListener("click", () => document.dispatchEvent(new CustomEvent("codeact:edit-last")));
  const mine = el("div", "msg-actions");
  mine.appendChild(edit);
  question.el.appendChild(mine);
  const answer = live.filter((m) => m.data.role === "assistant" && m.data.final && m.data.id > question.data.id).at(-1);
  if (answer && answer.data.status === "complete") {
    const again = el("button", "btn btn-small btn-quiet", "Regenerate");
    again.type = "button";
    again.setAttribute("aria-label", "Regenerate the last answer");
    again.title = "Ask for another answer. This one is kept, marked as replaced. Code already run is not undone: the Python session keeps its variables.";
    again.addEventListener("click", () => {
      if (send({ type: "regenerate", message_id: question.data.id })) {
        flash("Answering again. Code that already ran is not undone: the Python session keeps its variables.");
      } else flash("Not connected: try again when the connection is back.", true);
    });
    const theirs = el("div", "msg-actions");
    theirs.appendChild(again);
    answer.el.appendChild(theirs);
  }
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
  const what = data.kind === "cell" ? "The cell" : "The reply";
  text.append(el("strong", "", `${what} ${failed ? "failed" : "was interrupted"}. `), data.error);
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
  if (ACTIVE.has(data.status) && data.kind === "cell") {
    // the cell shows its own state ("Waiting to run…", then its timer)
  } else if (ACTIVE.has(data.status)) {
    const replying = [...state.messages.values()].some((m) => m.data.turn_id === data.id && m.data.status === "streaming");
    if (!replying) node.appendChild(thinking());
  } else if (data.status === "failed" || data.status === "interrupted") {
    failure(node, data, latest);
  } else if (data.status === "stopped" && latest && data.kind !== "cell") {
    node.appendChild(retryButton(data.id, "Regenerate"));
  }
  place(node, turnKey(data));
}

// A turn changed: draw it, and the others again (only the latest offers Retry).
export function applyTurn(data) {
  renderTurn(data);
  for (const entry of state.turns.values()) if (entry.data.id !== data.id) renderTurn(entry.data);
}
