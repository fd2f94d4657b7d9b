// Compare on your image: send one image for 2-3 models, poll the comparison, draw each
// model's boxes. The server matches the boxes (playground/matching.py); this only draws.
// Without this script the form posts and the result page refreshes itself, minus canvases.
import { pause } from "./net.js";
import { fileSizes } from "./sizes.js";

const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const AGREED = "hsl(145 70% 36%)";
const ONLY = "hsl(28 95% 50%)";
// As on the try page (playground.js): a picture whose longer side is under MIN_SIDE px is
// enlarged by a whole factor with square pixels; labels and lines are sized in CSS pixels.
const MIN_SIDE = 320;
const MAX_WIDTH = 960; // a larger picture is drawn at most this wide
const count = (n) => new Intl.NumberFormat("en-US").format(n); // the site's 27,011,762

// An error worth asking again for, as on the try page (playground.js): the network failed
// (offline, a server restarting) or the answer was a 429/5xx or not our JSON.
class Transient extends Error {}
const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const GIVE_UP_MS = 5 * 60 * 1000; // failures in a row before the page stops asking

async function getJson(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { ...options, headers: { Accept: "application/json", ...(options.headers || {}) } });
  } catch (error) {
    throw new Transient(`no connection to the server: ${error.message}`);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    const message = `HTTP ${response.status}`;
    throw response.ok || TRANSIENT_STATUS.has(response.status) ? new Transient(message) : new Error(message);
  }
  if (!response.ok) {
    const message = body.error ? body.error.message : `HTTP ${response.status}`;
    throw TRANSIENT_STATUS.has(response.status) ? new Transient(message) : new Error(message);
  }
  return body;
}

// --- the form: pick models, choose or drop an image ----------------------------------
const form = document.getElementById("compare-form");
if (form) {
  const input = form.querySelector("input[type=file]");
  const zone = document.getElementById("dropzone");
  const hint = document.getElementById("dropzone-hint");
  const error = document.getElementById("compare-error");
  const show = (message) => { error.textContent = message; error.hidden = !message; };
  input.addEventListener("change", () => { hint.textContent = input.files[0] ? input.files[0].name : ""; });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.add("over"); });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      input.dispatchEvent(new Event("change"));
    }
  });
  // The demo's example images: a click puts one in the file input, as a pick would.
  for (const hidden of form.querySelectorAll(".js-only")) hidden.hidden = false;
  for (const button of form.querySelectorAll("[data-example]")) {
    button.addEventListener("click", async () => {
      let blob;
      try {
        const response = await fetch(button.dataset.example);
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        blob = await response.blob();
      } catch (err) {
        show(`The example could not be loaded (${err.message}); check your connection.`);
        return;
      }
      const data = new DataTransfer();
      data.items.add(new File([blob], button.dataset.example.split("/").pop(), { type: blob.type }));
      input.files = data.files;
      input.dispatchEvent(new Event("change"));
    });
  }
  let sending = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (sending) return; // pressed again while the upload is on its way
    const file = input.files[0];
    if (!file) return show("Choose an image (JPEG, PNG, WebP or GIF).");
    const limit = Number(form.dataset.maxBytes);
    if (file.size > limit) {
      const [big, most] = fileSizes(file.size, limit);
      return show(`That file is ${big}; the limit is ${most}.`);
    }
    show("");
    const button = form.querySelector("button[type=submit]");
    // Busy, said with aria-disabled rather than `disabled`: a disabled button loses focus,
    // which fell to <body> and left a keyboard or screen-reader user at the top of the page.
    button.setAttribute("aria-disabled", "true");
    sending = true;
    try {
      const created = await getJson(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-CSRFToken": form.querySelector("input[name=csrfmiddlewaretoken]").value },
      });
      location.assign(created.url);
    } catch (err) {
      show(err.message);
      button.removeAttribute("aria-disabled");
      sending = false;
    }
  });
}

// --- the result: poll, then draw every panel -------------------------------------------
const root = document.getElementById("compare-result");
if (root) {
  const slider = document.getElementById("threshold");
  const sliderValue = document.getElementById("threshold-value");
  const summary = document.getElementById("compare-summary");
  const images = new Map();
  let data = JSON.parse(document.getElementById("compare-data").textContent);

  const loadImage = (src) => {
    if (!images.has(src)) {
      images.set(src, new Promise((resolve, reject) => {
        const img = new Image();
        img.onload = () => resolve(img);
        // Forgotten, so a later draw loads it again (a flaky network), and said as an error.
        img.onerror = () => {
          images.delete(src);
          reject(new Transient(`the picture did not load (${src})`));
        };
        img.src = src;
      }));
    }
    return images.get(src);
  };

  const fetchData = () => getJson(`${location.pathname}?threshold=${encodeURIComponent(slider.value)}`);

  async function drawPanel(panel) {
    const el = root.querySelector(`.compare-panel[data-job="${panel.job}"]`);
    el.dataset.status = panel.status;
    const badge = el.querySelector("[data-role=status]");
    badge.textContent = panel.status.charAt(0).toUpperCase() + panel.status.slice(1);
    // The badge's colour follows the status, as the server renders it (compare_run.html).
    const tone = panel.status === "succeeded" ? "live" : FINAL.has(panel.status) ? "deprecated" : "beta";
    badge.className = `badge badge-${tone}`;
    const error = el.querySelector("[data-role=error]");
    // Known once a worker ran the job: the live updates say it as a reload would.
    el.querySelector("[data-role=untrained]").hidden = !panel.untrained;
    error.hidden = !panel.error;
    error.textContent = panel.error ? `${panel.error.message} (${panel.error.code})` : "";
    const ms = (v) => (v === null || v === undefined ? "…" : `${Number(v).toLocaleString("en-US")} ms`);
    el.querySelector("[data-role=queue]").textContent = ms(panel.latency.queue_ms);
    el.querySelector("[data-role=model]").textContent = ms(panel.latency.model_ms);
    if (panel.status !== "succeeded") return;
    const canvas = el.querySelector("canvas");
    // The server's image, upright as the worker turned it (playground/views.py job_image).
    const image = await loadImage(panel.image_url);
    const side = Math.max(panel.width, panel.height);
    const scale = side < MIN_SIDE ? Math.ceil(MIN_SIDE / side) : Math.min(1, MAX_WIDTH / panel.width);
    canvas.width = Math.max(1, Math.round(panel.width * scale));
    canvas.height = Math.max(1, Math.round(panel.height * scale));
    canvas.classList.toggle("is-pixelated", scale > 1);
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff"; // transparent parts on white, as the model saw them
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = scale <= 1;
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = true;
    // Canvas pixels per CSS pixel as the canvas is shown: labels 13 px, lines 2 px on screen.
    const shown = canvas.getBoundingClientRect().width;
    const u = shown > 0 ? canvas.width / shown : 1;
    canvas.dataset.unit = String(u);
    ctx.lineWidth = 2 * u;
    ctx.font = `${13 * u}px system-ui, sans-serif`;
    let agreed = 0;
    // "Only" boxes first, so agreed ones are drawn on top of them.
    const ordered = [...panel.detections].sort((a, b) => (a.with?.length ? 1 : 0) - (b.with?.length ? 1 : 0));
    for (const d of ordered) {
      const isAgreed = Boolean(d.with && d.with.length);
      agreed += isAgreed ? 1 : 0;
      const { xmin, ymin, xmax, ymax } = d.box;
      ctx.strokeStyle = ctx.fillStyle = isAgreed ? AGREED : ONLY;
      ctx.setLineDash(isAgreed ? [] : [6 * u, 4 * u]);
      ctx.strokeRect(xmin * scale, ymin * scale, (xmax - xmin) * scale, (ymax - ymin) * scale);
      const text = `${d.label} ${d.score.toFixed(2)}`;
      ctx.setLineDash([]);
      const tag = 17 * u;
      const top = Math.max(0, ymin * scale - tag);
      ctx.fillRect(xmin * scale, top, ctx.measureText(text).width + 6 * u, tag);
      ctx.fillStyle = "#fff";
      ctx.textBaseline = "middle";
      ctx.fillText(text, xmin * scale + 3 * u, top + tag / 2);
    }
    canvas.dataset.boxes = String(panel.detections.length);
    el.dataset.agreed = String(agreed);
    el.dataset.only = String(panel.detections.length - agreed);
    el.querySelector("[data-role=agreement]").textContent = data.status === "done"
      ? `${panel.detections.length} boxes: ${agreed} agreed, ${panel.detections.length - agreed} found only by ${panel.name}.`
      : "";
  }

  async function draw() {
    await Promise.all(data.panels.map(drawPanel));
    if (data.status === "done") {
      const only = data.panels.filter((p) => p.only !== null).map((p) => `only ${p.name}: ${p.only}`);
      summary.textContent = data.agreed === null
        ? "Fewer than two models succeeded: nothing to match."
        : `${data.agreed} boxes found by two or more models at score ≥ ${data.threshold} (IoU ≥ ${data.iou_min}, same label); ${only.join("; ")}.`;
      root.dataset.status = "done";
      root.dataset.threshold = String(data.threshold);  // which threshold is drawn now
      document.body.dataset.compareStatus = "done";
    } else {
      root.dataset.status = "running";
      summary.textContent = `Running: ${data.panels.filter((p) => FINAL.has(p.status)).length} of ${data.panels.length} models done…`;
    }
  }

  // A failed poll is not a failed comparison: the models' jobs go on on the server (each
  // charged only if it succeeds), so the page says it is reconnecting and asks again,
  // backing off to 10 s, for up to GIVE_UP_MS of failures in a row. Before, one failed
  // poll (offline, the server restarting) stopped the page for good.
  async function poll() {
    let failingSince = 0;
    let wait = 700;
    while (data.status !== "done") {
      await pause(wait);
      try {
        data = await fetchData();
        await draw();
      } catch (err) {
        if (!(err instanceof Transient)) throw err;
        failingSince ||= Date.now();
        if (Date.now() - failingSince > GIVE_UP_MS) {
          throw new Error(`Connection lost (${err.message}); reload this page to see the comparison: the runs went on on the server.`);
        }
        root.dataset.status = "reconnecting";
        summary.textContent = `Connection lost (${err.message}); trying again… The runs go on on the server.`;
        wait = Math.min(Math.max(wait * 2, 1000), 10000);
        continue;
      }
      failingSince = 0;
      wait = 700;
    }
  }

  let pending = null;
  slider.addEventListener("input", () => {
    sliderValue.textContent = Number(slider.value).toFixed(3);
    if (data.status !== "done") return;
    clearTimeout(pending);
    pending = setTimeout(async () => {
      try {
        data = await fetchData();
        await draw();
      } catch (err) {
        summary.textContent = err.message;
      }
    }, 150);
  });

  // Drawn again when the panels change width (a rotated phone, a resized window), so the
  // labels stay their size on screen.
  let drawnWidth = 0;
  let redraw = 0;
  new ResizeObserver(([entry]) => {
    const width = entry.contentRect.width;
    if (!drawnWidth) drawnWidth = width;
    if (Math.abs(width - drawnWidth) < 1) return;
    drawnWidth = width;
    cancelAnimationFrame(redraw);
    redraw = requestAnimationFrame(() => draw().catch((err) => { summary.textContent = err.message; }));
  }).observe(root);

  // The first drawing: a picture that did not load is asked again a few times.
  async function firstDraw() {
    for (let tries = 1; ; tries++) {
      try {
        return await draw();
      } catch (err) {
        if (!(err instanceof Transient) || tries >= 5) throw err;
        summary.textContent = `${err.message}; trying again…`;
        await pause(1000 * tries);
      }
    }
  }
  firstDraw().then(poll).catch((err) => { summary.textContent = err.message; });
}
