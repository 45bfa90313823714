// Code the user can run: Python code blocks in answers and in their own messages
// get a Run button, and any cell can be edited and run again. Each run is a new
// cell of the user's own in the conversation's kernel, below the others (history
// is never rewritten); the model sees it, and its output, with the next message.

import { flash } from "./composer.js";
import { el } from "./dom.js";
import { send } from "./socket.js";
import { ACTIVE, state } from "./state.js";

const PYTHON = /^(python3?|py|ipython3?|)$/i;
const BUSY_TITLE = "Code can run when the assistant has finished answering.";

export function busy() {
  return [...state.turns.values()].some((t) => ACTIVE.has(t.data.status));
}

export function runCell(code) {
  if (!code.trim()) return false;
  const clientId = crypto.randomUUID ? crypto.randomUUID() : String(Date.now());
  if (!send({ type: "run_cell", code, client_id: clientId })) {
    flash("Not connected: the code was not run. Try again when the connection is back.", true);
    return false;
  }
  return true;
}

function runButton(getCode, label) {
  const button = el("button", "btn btn-small btn-run", "Run");
  button.type = "button";
  button.setAttribute("aria-label", label);
  button.addEventListener("click", () => runCell(getCode()));
  return button;
}

function codeBar(pre, getCode) {
  const bar = el("div", "code-bar");
  bar.appendChild(runButton(getCode, "Run this code"));
  pre.before(bar);
}

// Python blocks of a rendered answer (Pygments names the language in the class).
export function addRunButtons(body) {
  for (const code of body.querySelectorAll("pre.code > code")) {
    const language = [...code.classList].find((c) => c.startsWith("language-"))?.slice(9) || "";
    if (!/^python/i.test(language)) continue;
    codeBar(code.parentElement, () => code.textContent);
  }
  updateRunButtons();
}

// A user's message as typed (no Markdown surprises), with its ``` blocks shown as
// code, the Python ones runnable.
export function userCodeBlocks(text) {
  const nodes = [];
  const fence = /^```[ \t]*([\w+-]*)[ \t]*\n([\s\S]*?)\n```[ \t]*$/gm;
  let at = 0;
  for (const match of text.matchAll(fence)) {
    const before = text.slice(at, match.index).replace(/\n$/, "");
    if (before) nodes.push(el("span", "msg-text", before));
    const pre = el("pre", "code");
    pre.appendChild(el("code", "", match[2]));
    const holder = el("div", "user-code");
    holder.appendChild(pre);
    if (PYTHON.test(match[1])) codeBar(pre, () => match[2]);
    nodes.push(holder);
    at = match.index + match[0].length;
  }
  const rest = text.slice(at).replace(/^\n/, "");
  if (rest || !nodes.length) nodes.push(el("span", "msg-text", rest));
  return nodes;
}

export function updateRunButtons() {
  const now = busy();
  for (const button of document.querySelectorAll(".btn-run")) {
    button.disabled = now;
    button.title = now ? BUSY_TITLE : "Run in this conversation's Python session, as a cell of your own";
  }
}

// Cells of a superseded reply are dimmed with it.
export function markCellsOf(messageId, superseded) {
  for (const cell of state.executions.values()) {
    if (cell.data.message_id === messageId) cell.el.classList.toggle("superseded", superseded);
  }
}

// ---- the cell editor ---------------------------------------------------------

export function closeEditor(entry) {
  entry.el.querySelector(".cell-editor")?.remove();
  entry.el.querySelector(".btn-edit")?.focus();
}

function submitEditor(entry, area) {
  if (busy()) {
    flash(BUSY_TITLE, true);
    return;
  }
  if (runCell(area.value)) closeEditor(entry);
}

export function openEditor(entry) {
  const open = entry.el.querySelector(".cell-editor");
  if (open) {
    open.querySelector("textarea").focus();
    return;
  }
  const box = el("div", "cell-editor");
  const id = `cell-editor-${entry.data.id}`;
  const label = el("label", "sr-only", `Code for a new cell, from cell ${entry.data.number}`);
  label.htmlFor = id;
  const area = el("textarea", "cell-editor-input");
  area.id = id;
  area.value = entry.data.code;
  area.spellcheck = false;
  area.rows = Math.min(20, Math.max(3, entry.data.code.split("\n").length + 1));
  area.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      submitEditor(entry, area);
    } else if (ev.key === "Escape") {
      ev.preventDefault();
      closeEditor(entry);
    } else if (ev.key === "Tab" && !ev.shiftKey && !ev.ctrlKey && !ev.altKey && !ev.metaKey) {
      // Indent with four spaces (Escape, then Tab, leaves the editor).
      ev.preventDefault();
      area.setRangeText("    ", area.selectionStart, area.selectionEnd, "end");
    }
  });
  const run = el("button", "btn btn-small btn-primary", "Run");
  run.type = "button";
  run.setAttribute("aria-label", "Run the edited code as a new cell");
  run.title = "Ctrl+Enter";
  run.addEventListener("click", () => submitEditor(entry, area));
  const cancel = el("button", "btn btn-small", "Cancel");
  cancel.type = "button";
  cancel.setAttribute("aria-label", "Close the editor");
  cancel.title = "Escape";
  cancel.addEventListener("click", () => closeEditor(entry));
  const note = el(
    "p",
    "muted small",
    "Runs as a new cell below, in the same Python session (Ctrl+Enter; Escape to close). The assistant sees it, and its output, with your next message.",
  );
  const buttons = el("div", "cell-editor-buttons");
  buttons.append(run, cancel);
  box.append(label, area, buttons, note);
  entry.el.querySelector(".cell-code").after(box);
  area.focus();
}
