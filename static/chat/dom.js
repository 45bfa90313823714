// Small DOM helpers shared by the page's modules.

export const transcript = document.getElementById("transcript");

export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function place(node, key) {
  // Keep the transcript ordered by key without rebuilding it.
  node.dataset.key = String(key);
  if (node.parentNode === transcript) node.remove();
  for (const child of transcript.children) {
    if (child.dataset.key !== undefined && Number(child.dataset.key) > key) {
      transcript.insertBefore(node, child);
      return;
    }
  }
  transcript.appendChild(node);
}

export function scrollToEnd() {
  const nearBottom = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 160;
  if (nearBottom) transcript.scrollTop = transcript.scrollHeight;
}
