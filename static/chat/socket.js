// The conversation's websocket: connect with backoff, send frames, and keep the
// page in step with the server. Persisted events carry the conversation's
// sequence number; a gap (or a reconnect) makes the page ask for everything
// after the last contiguous number it has seen.

import { state } from "./state.js";

const connection = document.getElementById("connection");

export function send(frame) {
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return false;
  state.socket.send(JSON.stringify(frame));
  return true;
}

export function isOpen() {
  return Boolean(state.socket && state.socket.readyState === WebSocket.OPEN);
}

export function requestResume() {
  if (state.resumePending) return;
  state.resumePending = true;
  send({ type: "resume", after_seq: state.lastSeq });
}

// The server refused a resync (too many in its window, CODEACT_QUOTA_RESUMES): ask
// again after a pause, or this page would never resync again.
const RESUME_RETRY_MS = 5000;
export function resumeRefused() {
  state.resumePending = false;
  setTimeout(requestResume, RESUME_RETRY_MS);
}

// A persisted event arrived: note its number, or resync if one is missing.
export function seen(seq) {
  if (seq > state.lastSeq + 1) requestResume();
  else state.lastSeq = Math.max(state.lastSeq, seq);
}

function setConnection(status, label) {
  connection.dataset.state = status;
  connection.textContent = label;
}

// onEvent(event) for every frame; onChange() whenever the connection opens or closes.
export function connect({ onEvent, onChange }) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/conversations/${state.conversationId}/`);
  state.socket = socket;
  setConnection("connecting", state.attempt ? "Reconnecting…" : "Connecting…");
  socket.addEventListener("open", () => {
    state.attempt = 0;
    setConnection("open", "Connected");
    state.resumePending = false;
    requestResume();
    if (state.outbox) {
      send(state.outbox);
      state.outbox = null;
    }
    onChange();
  });
  let parts = null; // the texts of a large frame that comes in `part` frames
  socket.addEventListener("message", (msg) => {
    let event;
    try {
      event = JSON.parse(msg.data);
      if (event.type === "part") {
        if (!parts || parts.id !== event.id) parts = { id: event.id, texts: [] };
        parts.texts.push(event.text);
        if (!event.last) return;
        event = JSON.parse(parts.texts.join(""));
        parts = null;
      }
    } catch (err) {
      console.error("bad frame from server", err);
      return;
    }
    onEvent(event);
  });
  socket.addEventListener("close", (ev) => {
    onChange();
    if (ev.code === 4404) {
      setConnection("error", "Not available");
      return;
    }
    if (ev.code === 4401) {
      // The session ended (logout, password change, account disabled): retrying cannot help.
      setConnection("error", "Signed out — reload the page to sign in");
      return;
    }
    // Exponential backoff with full jitter, capped at 15 s.
    const delay = Math.random() * Math.min(15000, 500 * 2 ** state.attempt);
    state.attempt += 1;
    setConnection("closed", "Offline — retrying");
    setTimeout(() => connect({ onEvent, onChange }), delay);
  });
}
