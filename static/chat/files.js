// The conversation's files: the list in the header, uploads with progress, and
// drag and drop anywhere on the conversation.

import { flash, showError } from "./composer.js";
import { el } from "./dom.js";
import { state } from "./state.js";

const filesList = document.getElementById("files-list");
const filesCount = document.getElementById("files-count");
const uploadInput = document.getElementById("upload-input");
const uploadBox = document.getElementById("upload-progress");
const uploadBar = document.getElementById("upload-bar");
const uploadLabel = document.getElementById("upload-label");
const dropZone = document.getElementById("drop-zone");

export function renderFile(data) {
  state.files.set(data.id, data);
  renderFiles();
}

// A file the user deleted (here or in another tab), or, after a resync, every
// file that is no longer listed.
export function forgetFile(id) {
  if (state.files.delete(id)) renderFiles();
}

export function keepOnlyFiles(ids) {
  const kept = new Set(ids);
  for (const id of [...state.files.keys()]) if (!kept.has(id)) state.files.delete(id);
  renderFiles();
}

function renderFiles() {
  const items = [...state.files.values()].sort((a, b) => a.path.localeCompare(b.path));
  filesList.replaceChildren(
    ...items.map((f) => {
      const li = el("li");
      const a = el("a", "", f.path);
      a.href = f.url;
      a.setAttribute("download", "");
      const remove = el("button", "btn-link small file-delete", "Delete");
      remove.type = "button";
      remove.setAttribute("aria-label", `Delete ${f.path}`);
      remove.addEventListener("click", () => deleteFile(f));
      li.append(a, el("span", "muted small", ` ${f.size_label} · ${f.origin === "upload" ? "uploaded" : "made by code"} `), remove);
      return li;
    }),
  );
  filesCount.textContent = String(state.files.size);
}

async function deleteFile(file) {
  if (!window.confirm(`Delete ${file.path}? The code will no longer find it in /workspace.`)) return;
  let response;
  try {
    response = await fetch(`/c/${state.conversationId}/files/${file.id}/delete/`, {
      method: "POST",
      headers: { "X-CSRFToken": state.csrfToken },
    });
  } catch {
    showError({ message: "The server could not be reached; the file was not deleted." });
    return;
  }
  let result = {};
  try {
    result = await response.json();
  } catch {}
  if (response.ok || response.status === 404) {
    forgetFile(file.id);
    if (response.ok) flash(`Deleted ${file.path}.`);
  } else {
    showError({ message: result.error?.message || `The file was not deleted (HTTP ${response.status}).` });
  }
}

function refused(list) {
  const { initial } = state;
  const tooBig = list.filter((f) => f.size > initial.upload_max_bytes);
  if (tooBig.length) {
    const names = tooBig.map((f) => f.name).join(", ");
    return `${names} ${tooBig.length === 1 ? "is" : "are"} larger than the ${initial.upload_max_label} limit; nothing was uploaded.`;
  }
  if (list.length > initial.uploads_per_request) return `Upload at most ${initial.uploads_per_request} files at a time.`;
  return null;
}

function uploaded(xhr, list, name) {
  uploadBox.hidden = true;
  let result = {};
  try {
    result = JSON.parse(xhr.responseText);
  } catch {}
  for (const f of result.files || []) renderFile(f);
  if (xhr.status >= 400) showError({ message: result.error?.message || `The upload failed (HTTP ${xhr.status}).` });
  else flash(`Uploaded ${name}. The assistant finds ${list.length === 1 ? "it" : "them"} in its working folder.`);
}

function uploadFiles(list) {
  const reason = refused(list);
  if (reason) {
    showError({ message: reason });
    return;
  }
  const body = new FormData();
  for (const file of list) body.append("file", file);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/c/${state.conversationId}/files/`);
  xhr.setRequestHeader("X-CSRFToken", state.csrfToken);
  const name = list.length === 1 ? list[0].name : `${list.length} files`;
  uploadBox.hidden = false;
  uploadBar.value = 0;
  uploadLabel.textContent = `Uploading ${name}…`;
  xhr.upload.addEventListener("progress", (ev) => {
    if (ev.lengthComputable) uploadBar.value = Math.round((ev.loaded / ev.total) * 100);
  });
  xhr.addEventListener("load", () => uploaded(xhr, list, name));
  xhr.addEventListener("error", () => {
    uploadBox.hidden = true;
    showError({ message: "The upload did not reach the server. Check the connection and try again." });
  });
  xhr.send(body);
}

export function setupUploads(root) {
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
  uploadInput.addEventListener("change", () => {
    if (uploadInput.files.length) uploadFiles([...uploadInput.files]);
    uploadInput.value = "";
  });
}
