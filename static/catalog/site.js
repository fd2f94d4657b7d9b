// Progressive enhancement for every page. The pages are complete without it: code blocks
// are plain <pre>, every tab panel shows in order under its own title, filters stay open.

// History entries a page adds (playground.js puts a run's permalink in the address bar)
// show one document under another page's URL. Back and Forward to an entry whose path this
// document does not show load that page: whichever document is showing when the traversal
// happens (a reloaded permalink holds the entry of the page the run was started from).
let shownPath = location.pathname;
document.addEventListener("vitrine:pushed", (event) => {
  shownPath = event.detail;
});
window.addEventListener("popstate", () => {
  if (location.pathname !== shownPath) location.reload();
});

// Copy buttons: every <div class="code"> gets one for its <pre>; any [data-copy="#id"]
// button copies that element's text.
async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Not a secure context, or permission refused: the old selection-based copy.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}

// What a copy did, said to assistive technology: the button's static aria-label ("Copy API
// key") hid its visible "Copied" from a screen reader, so a copy, the one-time API key's
// included, went unconfirmed. The label says it too, and a polite live region announces it.
// The region is in the page from the first copy button on, empty: one added with its words
// already in it is not announced by every screen reader.
let copyStatus = null;
function copyStatusRegion() {
  if (!copyStatus) {
    copyStatus = document.createElement("p");
    copyStatus.id = "copy-status";
    copyStatus.className = "visually-hidden";
    copyStatus.setAttribute("role", "status");
    (document.getElementById("main") || document.body).append(copyStatus); // in a landmark
  }
  return copyStatus;
}
function sayCopied(text) {
  copyStatusRegion().textContent = "";
  // A frame later, so the same words said twice in a row are announced again.
  requestAnimationFrame(() => {
    copyStatus.textContent = text;
  });
}

function wireCopy(button, source) {
  const label = button.textContent;
  const name = button.getAttribute("aria-label");
  const what = (name || label).replace(/^Copy\s*/, "") || "the text";
  copyStatusRegion();
  button.hidden = false;
  button.addEventListener("click", async () => {
    const ok = await copyText(source().replace(/\n$/, ""));
    button.textContent = ok ? "Copied" : "Press Ctrl+C";
    button.dataset.state = ok ? "copied" : "failed";
    if (name) button.setAttribute("aria-label", ok ? `Copied ${what}` : `${what}: press Ctrl+C to copy`);
    sayCopied(ok ? `Copied ${what} to the clipboard.` : `Could not copy ${what}: select it and press Ctrl+C.`);
    setTimeout(() => {
      button.textContent = label;
      if (name) button.setAttribute("aria-label", name);
      delete button.dataset.state;
    }, 1600);
  });
}

for (const block of document.querySelectorAll(".code")) {
  const pre = block.querySelector("pre");
  if (!pre || block.querySelector(":scope > .copy")) continue;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy";
  button.textContent = "Copy";
  button.setAttribute("aria-label", `Copy ${block.dataset.label || "code"}`);
  block.append(button);
  block.classList.add("has-copy");
  wireCopy(button, () => pre.innerText);
}
for (const button of document.querySelectorAll("[data-copy]")) {
  const target = document.querySelector(button.dataset.copy);
  if (target) wireCopy(button, () => target.innerText.trim());
}

// A form sent back with errors: focus goes to its first invalid field (Django marks each
// with aria-invalid), where its error is read out with it, not to the field the form
// autofocuses anyway (sign-up's Username, valid or not), unless that one is invalid too.
const invalid = document.querySelector("main form [aria-invalid='true']");
if (invalid && !document.querySelector("main form [autofocus][aria-invalid='true']")) {
  invalid.focus();
}

// Tabs: <div class="tabs" data-tabs="name"> holding <div class="tab-panel" data-tab="slug"
// data-tab-label="Label">. The chosen tab is remembered per tab group name, so picking
// Python on one model page shows Python on the next.
for (const [index, tabs] of [...document.querySelectorAll(".tabs[data-tabs]")].entries()) {
  const panels = [...tabs.querySelectorAll(":scope > .tab-panel")];
  if (panels.length < 2) continue;
  const list = document.createElement("div");
  list.className = "tab-list";
  list.setAttribute("role", "tablist");
  const key = `vitrine.tab.${tabs.dataset.tabs}`;
  const buttons = panels.map((panel, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.setAttribute("role", "tab");
    button.id = `tab-${index}-${i}`;
    button.textContent = panel.dataset.tabLabel;
    button.dataset.tab = panel.dataset.tab;
    button.setAttribute("aria-controls", panel.id || (panel.id = `panel-${index}-${i}`));
    panel.setAttribute("role", "tabpanel");
    panel.setAttribute("aria-labelledby", button.id);
    list.append(button);
    return button;
  });
  const select = (slug, remember) => {
    const chosen = panels.some((p) => p.dataset.tab === slug) ? slug : panels[0].dataset.tab;
    panels.forEach((panel, i) => {
      const on = panel.dataset.tab === chosen;
      panel.hidden = !on;
      buttons[i].setAttribute("aria-selected", String(on));
      buttons[i].tabIndex = on ? 0 : -1;
    });
    if (remember) {
      try {
        localStorage.setItem(key, chosen);
      } catch {}
    }
  };
  list.addEventListener("click", (event) => {
    const button = event.target.closest("[role=tab]");
    if (button) select(button.dataset.tab, true);
  });
  list.addEventListener("keydown", (event) => {
    const i = buttons.indexOf(document.activeElement);
    if (i < 0 || !["ArrowLeft", "ArrowRight", "Home", "End"].includes(event.key)) return;
    event.preventDefault();
    const next = { ArrowLeft: i - 1, ArrowRight: i + 1, Home: 0, End: buttons.length - 1 }[event.key];
    const button = buttons[(next + buttons.length) % buttons.length];
    select(button.dataset.tab, true);
    button.focus();
  });
  tabs.prepend(list);
  tabs.classList.add("is-enhanced");
  let saved = null;
  try {
    saved = localStorage.getItem(key);
  } catch {}
  select(saved || panels[0].dataset.tab, false);
}

// The model page's section nav marks the section in view.
const nav = document.querySelector(".section-nav");
if (nav && "IntersectionObserver" in window) {
  const links = new Map(
    [...nav.querySelectorAll("a[href^='#']")].map((a) => [a.getAttribute("href").slice(1), a]),
  );
  const observer = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        links.forEach((a) => a.classList.remove("is-current"));
        links.get(entry.target.id)?.classList.add("is-current");
      }
    },
    { rootMargin: "-20% 0px -70% 0px" },
  );
  links.forEach((_, id) => {
    const section = document.getElementById(id);
    if (section) observer.observe(section);
  });
}

// Filters fold away on a phone unless one is in use (they are open without JS). site.css
// shows them folded from the first paint until this has run (.is-ready), so nothing jumps.
const filters = document.querySelector("details.filters-panel");
if (filters && !filters.hasAttribute("data-active") && matchMedia("(max-width: 59.99rem)").matches) {
  filters.open = false;
}
filters?.classList.add("is-ready");

// A box that scrolls sideways says so: on a phone a chart or a wide table is cut at the
// screen's edge with nothing to tell that more is there. The cue is a line above the box,
// shown while the box is wider inside than out, and gone once it fits (a wider window).
const SIDEWAYS = "figure.chart, .scroll";
function markSideways() {
  for (const box of document.querySelectorAll(SIDEWAYS)) {
    const cue = box.previousElementSibling?.classList.contains("scroll-cue")
      ? box.previousElementSibling
      : null;
    const wider = box.offsetParent !== null && box.scrollWidth > box.clientWidth + 1;
    if (wider && !cue) {
      const line = document.createElement("p");
      line.className = "scroll-cue";
      line.setAttribute("aria-hidden", "true");  // the box itself is read whole
      line.textContent = box.matches("figure") ? "Scroll sideways to see the whole chart →"
        : "Scroll sideways to see the whole table →";
      box.before(line);
    } else if (!wider && cue) {
      cue.remove();
    }
  }
}
markSideways();
window.addEventListener("resize", markSideways);
// A tab or a <details> that opens may show a box that was hidden when the page loaded.
document.addEventListener("click", () => requestAnimationFrame(markSideways));
document.addEventListener("toggle", markSideways, true);

// The page's section tabs, and the site's sections in the header, scroll sideways on a
// phone: their right edge fades while more is past it ("Related" was cut at the screen's edge
// with nothing to say so).
for (const row of document.querySelectorAll(".section-nav ul, .site-nav")) {
  const mark = () => {
    row.toggleAttribute("data-more", row.scrollLeft + row.clientWidth < row.scrollWidth - 1);
  };
  mark();
  row.addEventListener("scroll", mark, { passive: true });
  window.addEventListener("resize", mark);
}

// A print button ([data-print], hidden until this script runs): a receipt to keep.
for (const button of document.querySelectorAll("[data-print]")) {
  button.hidden = false;
  button.addEventListener("click", () => window.print());
}
