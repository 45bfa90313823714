// The page's one state object: what the server sent with the page, what the
// socket has seen, and the rows on screen (keyed by id). Modules read and change
// it; nothing else holds mutable state.

const initial = JSON.parse(document.getElementById("initial-data").textContent);

export const state = {
  conversationId: document.getElementById("chat").dataset.conversationId,
  csrfToken: document.querySelector("input[name=csrfmiddlewaretoken]")?.value || "",
  initial,
  labels: initial.labels, // role names and cell states, in the server's words
  // the socket and resync
  socket: null,
  attempt: 0,
  lastSeq: 0,
  resumePending: false,
  pendingText: null, // text of the last user_message, kept until acked
  outbox: null, // a user_message typed while the socket was not open
  hintNote: null, // a message under the composer, shown until a moment passes
  editing: null, // id of the last message while the composer edits it
  // rows on screen
  messages: new Map(), // id -> {data, el, text}
  turns: new Map(), // id -> {data, el}
  executions: new Map(), // id -> {data, el, outputs: Map(id -> {data, el, text})}
  orphanOutputs: new Map(), // execution id -> [output data] whose cell is not shown yet
  files: new Map(), // id -> data
  feedback: new Map(Object.entries(initial.feedback || {}).map(([id, f]) => [Number(id), f])),
};

export const ACTIVE = new Set(["queued", "running"]);
