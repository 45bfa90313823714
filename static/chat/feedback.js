// Rating an answer: thumbs up or down, with an optional comment.

import { flash, showError } from "./composer.js";
import { el } from "./dom.js";
import { state } from "./state.js";

const SVG = "http://www.w3.org/2000/svg";

function thumb(down) {
  // Drawn, not an emoji: no emoji font is needed and it follows the text colour.
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("fill", "none");
  svg.setAttribute("stroke", "currentColor");
  svg.setAttribute("stroke-width", "2");
  svg.setAttribute("stroke-linecap", "round");
  svg.setAttribute("stroke-linejoin", "round");
  svg.setAttribute("aria-hidden", "true");
  if (down) svg.style.transform = "rotate(180deg)";
  for (const d of ["M7 10v12", "M15 5.9 14 10h5.8a2 2 0 0 1 1.9 2.6l-2.3 8A2 2 0 0 1 17.5 22H4a2 2 0 0 1-2-2v-8a2 2 0 0 1 2-2h2.8a2 2 0 0 0 1.8-1.1L12 2a3.1 3.1 0 0 1 3 3.9Z"]) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    svg.appendChild(path);
  }
  return svg;
}

function rateButton(entry, data, value, label) {
  const current = state.feedback.get(data.id);
  const button = el("button", "btn btn-rate");
  button.appendChild(thumb(value < 0));
  button.type = "button";
  button.title = label;
  button.setAttribute("aria-label", label);
  button.setAttribute("aria-pressed", String(current?.rating === value));
  button.addEventListener("click", () => {
    const now = state.feedback.get(data.id);
    const same = now?.rating === value;
    saveFeedback(entry, data, same ? null : value, same ? "" : now?.comment || "");
  });
  return button;
}

function commentForm(entry, data, current) {
  const comment = el("form");
  const inputBox = el("input");
  inputBox.type = "text";
  inputBox.maxLength = 2000;
  inputBox.value = current.comment || "";
  inputBox.placeholder = current.rating > 0 ? "What was good? (optional)" : "What went wrong? (optional)";
  inputBox.setAttribute("aria-label", "Comment on this answer");
  const save = el("button", "btn btn-small", current.comment ? "Update" : "Send");
  save.type = "submit";
  comment.append(inputBox, save);
  comment.addEventListener("submit", (ev) => {
    ev.preventDefault();
    saveFeedback(entry, data, state.feedback.get(data.id)?.rating ?? null, inputBox.value);
  });
  return comment;
}

export function renderFeedback(entry, data) {
  let box = entry.el.querySelector(".feedback");
  if (data.role !== "assistant" || !data.final || data.status === "streaming") {
    if (box) box.remove();
    return;
  }
  if (!box) {
    box = el("div", "feedback");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", "Rate this answer");
    entry.el.appendChild(box);
  }
  const current = state.feedback.get(data.id);
  const children = [rateButton(entry, data, 1, "Good answer"), rateButton(entry, data, -1, "Bad answer")];
  if (current) children.push(commentForm(entry, data, current));
  box.replaceChildren(...children);
}

async function saveFeedback(entry, data, rating, comment) {
  let result = {};
  try {
    const response = await fetch(`/c/${state.conversationId}/messages/${data.id}/feedback/`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": state.csrfToken },
      body: JSON.stringify({ rating, comment }),
      credentials: "same-origin",
    });
    result = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(result.error?.message || `HTTP ${response.status}`);
  } catch (error) {
    showError({ message: `Your rating was not saved: ${error.message}` });
    return;
  }
  if (result.feedback) state.feedback.set(data.id, result.feedback);
  else state.feedback.delete(data.id);
  renderFeedback(entry, data);
  if (rating !== null) flash(comment ? "Thanks, your feedback was saved." : "Thanks! Add a comment if you like.");
}
