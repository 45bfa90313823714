// The sidebar as a drawer on narrow screens (app.css, "max-width: 760px").
//
// The page's menu button opens it; Escape, the backdrop and the drawer's Close
// button close it. While it is open the rest of the page is inert and Tab goes
// round the drawer; while it is closed the drawer is visibility: hidden (app.css),
// so Tab never reaches it. Wide screens show the sidebar as a column and hide
// the button. Independent of the conversation page's modules: home loads it too.

const NARROW = window.matchMedia("(max-width: 760px)");
const drawer = document.getElementById("sidebar");
const button = document.querySelector('.menu-button[aria-controls="sidebar"]');
const backdrop = document.getElementById("drawer-backdrop");
const FOCUSABLE = "a[href], button:not([disabled]), input:not([disabled]), select, textarea, summary";

function isOpen() {
  return button.getAttribute("aria-expanded") === "true";
}

function focusable() {
  return [...drawer.querySelectorAll(FOCUSABLE)].filter((node) => node.getClientRects().length > 0);
}

function setOpen(open, moveFocus = true) {
  button.setAttribute("aria-expanded", String(open));
  drawer.classList.toggle("open", open);
  backdrop.hidden = !open;
  for (const node of drawer.parentElement.children) {
    if (node !== drawer && node !== backdrop) node.inert = open;
  }
  if (!moveFocus) return;
  if (open) {
    const current = drawer.querySelector('[aria-current="page"]');
    (current || focusable()[0] || drawer).focus();
  } else {
    button.focus();
  }
}

if (drawer && button && backdrop) {
  button.addEventListener("click", () => setOpen(!isOpen()));
  backdrop.addEventListener("click", () => setOpen(false));
  drawer.querySelector(".drawer-close")?.addEventListener("click", () => setOpen(false));
  document.addEventListener("keydown", (event) => {
    if (!isOpen() || event.defaultPrevented) return;
    if (event.key === "Escape") {
      event.preventDefault();
      setOpen(false);
    } else if (event.key === "Tab") {
      // Tab goes round the drawer rather than out to the browser's controls.
      const nodes = focusable();
      const edge = event.shiftKey ? nodes[0] : nodes[nodes.length - 1];
      if (nodes.length && (document.activeElement === edge || !drawer.contains(document.activeElement))) {
        event.preventDefault();
        (event.shiftKey ? nodes[nodes.length - 1] : nodes[0]).focus();
      }
    }
  });
  // Turned to a wide screen with the drawer open: the sidebar is a column again.
  NARROW.addEventListener("change", (event) => {
    if (!event.matches && isOpen()) setOpen(false, false);
  });
}
