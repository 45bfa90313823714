// Code cells and their outputs, streamed live: a running cell shows a timer,
// text output grows by deltas, long output starts collapsed.

import { openEditor } from "./code.js";
import { el, place } from "./dom.js";
import { requestResume } from "./socket.js";
import { state } from "./state.js";

const ANSI = /\x1b\[[0-9;?]*[ -\/]*[@-~]/g;
const COLLAPSE_LINES = 40;

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

function tickTimer(node) {
  // Server and browser clocks differ a little; never show a negative time.
  const seconds = Math.max(0, (Date.now() - Number(node.dataset.since)) / 1000);
  node.textContent = formatDuration(Math.floor(seconds * 10) / 10);
}

export function startTimers() {
  setInterval(() => {
    for (const node of document.querySelectorAll(".cell[data-status=running] .cell-time")) tickTimer(node);
  }, 200);
}

function cellEntry(data) {
  let entry = state.executions.get(data.id);
  if (!entry) {
    const node = el("section", data.origin === "user" ? "cell cell-user" : "cell");
    node.setAttribute("role", "region");
    node.setAttribute("aria-label", `Code cell ${data.number}${data.origin === "user" ? ", run by you" : ""}`);
    const code = el("pre", "cell-code code");
    code.appendChild(el("code"));
    node.append(el("div", "cell-head"), code, el("div", "cell-outputs"), el("div", "cell-web"));
    entry = { data, el: node, outputs: new Map() };
    state.executions.set(data.id, entry);
    place(node, data.message_id * 2 + 0.5);
  }
  return entry;
}

function cellHead(entry, data) {
  const count = data.execution_count ? `In [${data.execution_count}]` : `Cell ${data.number}`;
  const label = state.labels.cell_status[data.status] || data.status;
  const status = el("span", `cell-status status-${data.status}`, label);
  const timer = el("span", "muted cell-time");
  if (data.status === "running") {
    timer.dataset.since = String(Date.parse(data.started_at));
    tickTimer(timer);
  } else if (data.duration != null) {
    timer.textContent = formatDuration(data.duration);
  }
  const head = entry.el.querySelector(".cell-head");
  const parts = [el("span", "cell-label", count)];
  if (data.origin === "user") parts.push(el("span", "cell-origin", "Run by you"));
  const edit = el("button", "btn btn-small btn-edit", "Edit");
  edit.type = "button";
  edit.setAttribute("aria-label", `Edit cell ${data.number} and run it again`);
  edit.addEventListener("click", () => openEditor(entry));
  head.replaceChildren(...parts, status, timer, copyButton(() => entry.data.code), edit);
  if (data.detail && data.status !== "ok" && data.status !== "error") head.appendChild(el("span", "cell-detail", data.detail));
  if (data.dropped_note) head.appendChild(el("span", "cell-detail cell-dropped", data.dropped_note));
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// "2 web requests" under a cell: what its code fetched through the proxy, in the
// order the requests ended, each with its outcome (a refusal in the danger colour).
function cellWeb(entry, data) {
  const box = entry.el.querySelector(".cell-web");
  const total = data.web_total || 0;
  if (!total) return box.replaceChildren();
  const open = box.querySelector("details")?.open || false;
  const details = el("details", "web-requests");
  details.open = open;
  const refused = data.web_refused ? `, ${data.web_refused} refused` : "";
  details.appendChild(el("summary", "", `${total} web request${total === 1 ? "" : "s"}${refused}`));
  const list = el("ul", "web-list");
  for (const item of data.web_requests) {
    const row = el("li", item.refused ? "web-refused" : "");
    row.append(el("code", "web-target", `${item.method} ${item.target}`), el("span", "web-outcome", item.outcome));
    if (!item.refused && item.bytes) row.appendChild(el("span", "muted", formatBytes(item.bytes)));
    list.appendChild(row);
  }
  if (total > data.web_requests.length) list.appendChild(el("li", "muted", `… and ${total - data.web_requests.length} more`));
  details.appendChild(list);
  box.replaceChildren(details);
}

export function renderExecution(data) {
  const entry = cellEntry(data);
  entry.data = data;
  entry.el.dataset.status = data.status;
  cellHead(entry, data);
  cellWeb(entry, data);
  entry.el.querySelector(".cell-code code").innerHTML = data.code_html; // Pygments-escaped on the server
  // A cell the user ran: the cell itself now shows the code their message held.
  const asked = state.messages.get(data.message_id);
  if (asked) {
    if (asked.data.cell) asked.el.hidden = true;
    entry.el.classList.toggle("superseded", Boolean(asked.data.superseded));
  }
  const waiting = state.orphanOutputs.get(data.id);
  if (waiting) {
    state.orphanOutputs.delete(data.id);
    for (const output of waiting) renderOutput(output);
  }
}

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

function outputEntry(cell, data) {
  let entry = cell.outputs.get(data.id);
  if (!entry) {
    entry = { data, el: el("div", `output output-${data.output_type}`), text: "" };
    entry.el.dataset.index = String(data.index);
    cell.outputs.set(data.id, entry);
    const box = cell.el.querySelector(".cell-outputs");
    const after = [...box.children].find((c) => Number(c.dataset.index) > data.index);
    box.insertBefore(entry.el, after || null);
  }
  return entry;
}

function imageLink(data) {
  const img = el("img", "output-image");
  img.src = data.image_url;
  img.alt = data.data["text/plain"] || "Plot";
  const link = el("a");
  link.href = data.image_url;
  link.target = "_blank";
  link.rel = "noopener";
  link.title = "Open full size";
  link.appendChild(img);
  return link;
}

function drawOutput(entry, data) {
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
    node.replaceChildren(imageLink(data));
  } else if (data.html) {
    node.className = `output output-${data.output_type} output-html`;
    node.innerHTML = data.html; // reduced to a table allowlist on the server
  } else {
    node.textContent = data.data["text/plain"] || "";
    setCollapsible(node, node.textContent);
  }
}

export function renderOutput(data) {
  const cell = state.executions.get(data.execution_id);
  if (!cell) {
    // A snapshot lists rows by their last change, so a finished cell comes after its outputs.
    const waiting = state.orphanOutputs.get(data.execution_id) || [];
    state.orphanOutputs.set(data.execution_id, [...waiting.filter((o) => o.id !== data.id), data]);
    return requestResume();
  }
  const entry = outputEntry(cell, data);
  entry.data = data;
  drawOutput(entry, data);
}

export function applyOutputDelta(event) {
  const cell = state.executions.get(event.execution_id);
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
