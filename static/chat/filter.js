// The sidebar's title filter: hides the conversations whose title does not hold
// what is typed (case-insensitive), and says so when none is left. The sidebar's
// own module, loaded wherever the sidebar is (home and the conversation page).

const input = document.getElementById("conversation-filter");
const empty = document.getElementById("filter-empty");

if (input) {
  input.addEventListener("input", () => {
    const needle = input.value.trim().toLowerCase();
    let shown = 0;
    for (const link of document.querySelectorAll(".conv-link")) {
      const match = !needle || link.textContent.toLowerCase().includes(needle);
      link.hidden = !match;
      shown += match ? 1 : 0;
    }
    if (empty) empty.hidden = shown > 0;
  });
}
