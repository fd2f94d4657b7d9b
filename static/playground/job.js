// A run's permalink while the run is queued or running (templates/playground/job.html).
// Without this script the page reloads itself every 2 s (its <noscript> refresh). With it,
// a reload every 2 s threw a keyboard or screen-reader user back to the top of the page, so
// the page asks for the run's state instead, says a change in its status line (a polite
// live region) and reloads once, when the run has ended and there is a result to show.
import { pause } from "./net.js";

const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const SAID = {
  queued: ["Queued", "Queued… this page shows the result when the run ends."],
  running: ["Running", "Running… this page shows the result when the run ends."],
};
const badge = document.getElementById("run-status");
const line = document.getElementById("status");

function show(status) {
  badge.dataset.status = status;
  const [label, sentence] = SAID[status] || [status, `${status}…`];
  badge.textContent = label;
  line.textContent = sentence;
}

async function follow() {
  show(badge.dataset.status);
  let wait = 1000;
  for (;;) {
    await pause(wait);
    let response;
    try {
      response = await fetch(location.pathname, {
        headers: { Accept: "application/json" },
        cache: "no-store",
      });
    } catch {
      // Offline, or the server restarting: the run goes on; ask again, less often.
      wait = Math.min(wait * 2, 10000);
      continue;
    }
    if (response.status === 404) {
      // A private run answers 404 to anyone but its owner (signed out in another tab).
      line.textContent = "This run is no longer shown to this browser: sign in as its owner to see it.";
      return;
    }
    let status = null;
    try {
      status = response.ok ? (await response.json()).status : null;
    } catch {}
    if (!status) {
      wait = Math.min(wait * 2, 10000);
      continue;
    }
    wait = 1500;
    if (FINAL.has(status)) {
      location.reload();
      return;
    }
    if (status !== badge.dataset.status) show(status);
  }
}

if (badge && line && !FINAL.has(badge.dataset.status)) follow();
