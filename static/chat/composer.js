// The composer: typing, sending, Stop, and the line under it that tells the user
// what is going on (an error, a finished upload, a lost connection).

import { isOpen, send } from "./socket.js";
import { ACTIVE, state } from "./state.js";

const input = document.getElementById("message-input");
const form = document.getElementById("composer");
const sendButton = document.getElementById("send-button");
const stopButton = document.getElementById("stop-button");
const hint = document.getElementById("composer-hint");
const emptyNote = document.getElementById("empty-transcript");

// A message for the user under the composer stays for a few seconds, whatever
// else redraws the composer meanwhile.
export function flash(text, error = false) {
  state.hintNote = { text, error, until: Date.now() + 6000 };
  updateComposer();
  setTimeout(updateComposer, 6100);
}

export function showError(event) {
  if ((event.reply_to === "user_message" || event.reply_to === "edit_message") && state.pendingText !== null) {
    if (!input.value) input.value = state.pendingText; // never lose what the user typed
    state.pendingText = null;
  }
  flash(event.message, true);
}

export function updateComposer() {
  const active = [...state.turns.values()].find((t) => ACTIVE.has(t.data.status));
  const open = isOpen();
  stopButton.hidden = !active;
  sendButton.hidden = Boolean(active);
  sendButton.disabled = !input.value.trim() || Boolean(state.outbox);
  sendButton.textContent = state.editing ? "Send edit" : "Send";
  if (state.editing && lastQuestion()?.data.id !== state.editing) stopEditing(false);
  const note = state.hintNote && Date.now() < state.hintNote.until ? state.hintNote : null;
  hint.classList.toggle("form-error", Boolean(note && note.error));
  if (!open && state.outbox) hint.textContent = "Not connected yet: your message will be sent as soon as the connection is back.";
  else if (!open) hint.textContent = "Not connected: reconnecting…";
  else if (note) hint.textContent = note.text;
  else if (active && active.data.kind === "cell") hint.textContent = "Your cell is running. Press Stop to interrupt it.";
  else if (active) hint.textContent = "The assistant is answering. Press Stop to end the reply early.";
  else hint.textContent = "";
  emptyNote.hidden = state.messages.size > 0;
}

function submit() {
  const text = input.value.trim();
  if (!text) return;
  const clientId = crypto.randomUUID ? crypto.randomUUID() : String(Date.now());
  const frame = state.editing
    ? { type: "edit_message", message_id: state.editing, text, client_id: clientId }
    : { type: "user_message", text, client_id: clientId };
  if (!send(frame)) state.outbox = frame; // sent as soon as the socket opens
  state.pendingText = text;
  input.value = "";
  stopEditing(false);
  autosize();
  updateComposer();
}

// ---- editing the last message ------------------------------------------------

function lastQuestion() {
  const live = [...state.messages.values()].filter((m) => m.data.role === "user" && !m.data.cell && !m.data.superseded);
  return live.sort((a, b) => a.data.id - b.data.id).at(-1) || null;
}

function editBanner() {
  let banner = document.getElementById("edit-banner");
  if (!banner) {
    banner = document.createElement("div");
    banner.id = "edit-banner";
    banner.className = "edit-banner";
    banner.setAttribute("role", "status");
    const text = document.createElement("span");
    text.textContent = "Editing your last message. Sending it replaces the answer (the earlier one is kept, marked as replaced); code that already ran is not undone.";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "btn btn-small";
    cancel.textContent = "Cancel";
    cancel.setAttribute("aria-label", "Cancel editing");
    cancel.addEventListener("click", () => stopEditing(true));
    banner.append(text, cancel);
    form.prepend(banner);
  }
  return banner;
}

export function startEditing() {
  const question = lastQuestion();
  if (!question) return false;
  state.editing = question.data.id;
  editBanner().hidden = false;
  input.value = question.data.content;
  autosize();
  updateComposer();
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
  return true;
}

function stopEditing(clear) {
  if (!state.editing) return;
  state.editing = null;
  const banner = document.getElementById("edit-banner");
  if (banner) banner.hidden = true;
  if (clear) {
    input.value = "";
    autosize();
  }
  updateComposer();
}

function autosize() {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, window.innerHeight * 0.4)}px`;
}

export function setupComposer() {
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      if (!sendButton.hidden && !sendButton.disabled) submit();
    } else if (ev.key === "ArrowUp" && !input.value && !ev.isComposing && !sendButton.hidden) {
      if (startEditing()) ev.preventDefault();
    } else if (ev.key === "Escape" && state.editing) {
      ev.preventDefault();
      stopEditing(true);
    }
  });
  document.addEventListener("codeact:edit-last", () => startEditing());
  input.addEventListener("input", () => {
    autosize();
    updateComposer();
  });
  stopButton.addEventListener("click", () => send({ type: "stop" }));
  for (const example of document.querySelectorAll(".example")) {
    example.addEventListener("click", () => {
      input.value = example.dataset.prompt;
      autosize();
      updateComposer();
      input.focus();
    });
  }
  input.focus();
}
