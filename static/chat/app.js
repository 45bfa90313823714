// CodeAct Web conversation page: native ES modules, no build step.
//
// The page holds a view of rows (messages, turns, cells, outputs, files) keyed
// by id, in one state object (state.js). Persisted events are upserts carrying
// the conversation sequence number; deltas carry the UTF-16 offset at which
// their text starts. A gap in either makes the page ask the server for
// everything after the last contiguous sequence number (socket.js).

import { applyOutputDelta, renderExecution, renderOutput, startTimers } from "./cells.js";
import { updateRunButtons } from "./code.js";
import { setupComposer, showError, updateComposer } from "./composer.js";
import { scrollToEnd, transcript } from "./dom.js";
import { forgetFile, keepOnlyFiles, renderFile, setupUploads } from "./files.js";
import { connect, resumeRefused, seen, send } from "./socket.js";
import { state } from "./state.js";
import { applyDelta, applyTurn, renderMessage, updateMessageActions } from "./transcript.js";

const root = document.getElementById("chat");
const titleEl = document.getElementById("conversation-title");
const modelPicker = document.getElementById("model-picker");
const webSwitch = document.getElementById("web-access");

function applyConversation(data) {
  if (modelPicker) modelPicker.value = data.model;
  if (webSwitch) webSwitch.checked = data.web_access;
  titleEl.textContent = data.title;
  document.title = `${data.title} · CodeAct Web`;
  const link = document.querySelector(`.conv-link[data-conversation-id="${state.conversationId}"]`);
  if (link) link.textContent = data.title;
}

const PERSISTED = {
  message: (event) => renderMessage(event.message),
  turn: (event) => applyTurn(event.turn),
  execution: (event) => renderExecution(event.execution),
  output: (event) => renderOutput(event.output),
  file: (event) => renderFile(event.file),
  conversation: (event) => applyConversation(event.conversation),
};

function applyPersisted(event) {
  PERSISTED[event.type]?.(event);
}

function handle(event) {
  if (event.type in PERSISTED) {
    seen(event.seq);
    applyPersisted(event);
  } else if (event.type === "sync") {
    state.resumePending = false;
    for (const e of event.events) applyPersisted(e);
    if (event.file_ids) keepOnlyFiles(event.file_ids);
    state.lastSeq = Math.max(state.lastSeq, event.last_seq);
  } else if (event.type === "file_deleted") {
    seen(event.seq);
    forgetFile(event.file_id);
  } else if (event.type === "output_delta") {
    seen(event.seq);
    applyOutputDelta(event);
  } else if (event.type === "delta") {
    applyDelta(event);
  } else if (event.type === "ack") {
    state.pendingText = null;
  } else if (event.type === "deleted") {
    window.location.href = "/";
    return;
  } else if (event.type === "error") {
    if (event.code === "quota_resumes") resumeRefused();
    showError(event);
  }
  updateComposer();
  if (event.type !== "delta" && event.type !== "output_delta") {
    updateMessageActions();
    updateRunButtons();
  }
  scrollToEnd();
}

function setupHeader() {
  if (modelPicker) {
    modelPicker.addEventListener("change", () => {
      if (!send({ type: "set_model", model: modelPicker.value })) showError({ message: "Not connected: the model was not changed." });
    });
  }
  if (webSwitch) {
    webSwitch.addEventListener("change", () => {
      if (!send({ type: "set_web_access", on: webSwitch.checked })) {
        webSwitch.checked = !webSwitch.checked;
        showError({ message: "Not connected: web access was not changed." });
      }
    });
  }
  document.getElementById("delete-form").addEventListener("submit", (ev) => {
    if (!window.confirm("Delete this conversation and everything in it?")) ev.preventDefault();
  });
}

// ---- start -----------------------------------------------------------------

for (const event of state.initial.events) applyPersisted(event);
state.lastSeq = state.initial.last_seq;
setupHeader();
setupUploads(root);
setupComposer();
startTimers();
updateComposer();
updateMessageActions();
updateRunButtons();
transcript.scrollTop = transcript.scrollHeight;
connect({ onEvent: handle, onChange: updateComposer });
