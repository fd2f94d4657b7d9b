// The demo (templates/playground/_demo.html), on model pages, the try page and /playground,
// and the result page of one run. Pick an image (drop, paste, file picker or an example),
// see what Run costs, send it, follow the job's live state without a reload, draw its boxes,
// re-filter them (threshold, classes) from the stored result with no new run, and show the
// API's JSON and the same call in curl and Python. Without this script the form posts and
// the result page refreshes itself; only the drawing needs it.
import { apiCall } from "./call.js";
import { pause } from "./net.js";
import { fileSizes, size } from "./sizes.js";

const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const SVG = "http://www.w3.org/2000/svg";
// A picture whose longer side is under MIN_SIDE px is drawn enlarged by a whole factor, its
// pixels kept square (the canvas's "is-pixelated" class keeps them sharp when CSS scales
// it); CSS caps the height (static/catalog/site.css). Labels are LABEL_PX CSS pixels tall
// at any scale, as the box lines are (non-scaling strokes).
const MIN_SIDE = 320;
const LABEL_PX = 12;

const $ = (id) => document.getElementById(id);
const root = document.querySelector("[data-demo]");
const form = $("try-form");
const result = $("result");
const canvas = $("canvas");
const slider = $("threshold");
const sliderValue = $("threshold-value");
const statusLine = $("status");
const table = $("detections");
const timingsLine = $("timings");
const classesBox = $("classes");
const costLine = $("demo-cost");
const shownLine = $("boxes-shown");
const fileInput = form?.querySelector("input[type=file]");

let job = null; // the job JSON (the API's job resource with every kept detection)
let image = null; // the upload, decoded
let chosen = null; // the File Run sends
let sending = false; // a Run's upload is on its way: Run is aria-disabled until it is answered
let refusal = ""; // why the picked file was refused, kept on screen over the cost sentence
// One Idempotency-Key per run meant: kept while an upload's answer is lost on the network, so
// Run sending the same file again finds the run the first upload made (a paid run is charged
// once); a new one once any answer came back or another file is picked.
let runKey = newKey();
function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}
const hiddenClasses = new Set();
const colours = new Map();
let overlay = null;
let shownWidth = 0; // the canvas's width on screen (CSS px) the labels were sized for

// The status line is a polite live region: a screen reader speaks it each time its text is
// set, even to the same words, so it is set only when what it says changes (a poll every
// second or so of a running job said "Running the model…" again each time).
function say(text) {
  if (statusLine && statusLine.textContent !== text) statusLine.textContent = text;
}

// An error worth asking again for: the network failed (offline, a reset connection, a
// server restarting), or the server or a proxy answered 429/5xx or a page that is not our
// JSON. Any other answer (403, 404...) is the server's word and is shown as it is.
class Transient extends Error {}
const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);

async function getJson(url, options = {}) {
  let response;
  try {
    response = await fetch(url, {
      ...options,
      headers: { Accept: "application/json", ...(options.headers || {}) },
    });
  } catch (error) {
    const lost = new Transient(`no connection to the server: ${error.message}`);
    lost.network = true;
    throw lost;
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    const message = `HTTP ${response.status}`;
    const error = response.ok || TRANSIENT_STATUS.has(response.status) ? new Transient(message) : new Error(message);
    error.status = response.status;
    throw error;
  }
  if (!response.ok) {
    const message = body.error ? body.error.message : `HTTP ${response.status}`;
    const error = TRANSIENT_STATUS.has(response.status) ? new Transient(message) : new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

// A running job's state, asked again through a flaky network: a lost poll is not a lost run
// (the job goes on on the worker and is charged only if it succeeds), so the page says it is
// reconnecting and asks again, sooner when the browser comes back online, for up to
// GIVE_UP_MS of failures in a row; then it says where the run is.
const GIVE_UP_MS = 5 * 60 * 1000;

async function poll(url) {
  const since = Date.now();
  let wait = 1000;
  for (;;) {
    try {
      return await getJson(url);
    } catch (error) {
      if (error.status === 404) {
        // A private run answers 404 to anyone but its owner: this browser signed out (or in
        // as someone else) in another tab since the run started.
        throw new Error(
          "This run is no longer shown to this browser: signed out, or signed in as someone else, in another tab? Sign in as its owner to see it in My runs; it goes on either way.",
        );
      }
      if (!(error instanceof Transient)) throw error;
      if (Date.now() - since > GIVE_UP_MS) {
        throw new Error(
          `Lost touch with the server (${error.message}). The run goes on: reload this page, or find it in My runs.`,
        );
      }
      result.dataset.state = "reconnecting";
      say(`Connection lost (${error.message}); trying again… The run goes on on the server.`);
      await pause(wait);
      wait = Math.min(10000, wait * 2);
    }
  }
}

// A box's colour, one per class: the palette the server renders into the page
// (<script id="box-palette">, playground/palette.py, which the PNG export draws with), picked
// by the same label hash as label_hash() there, so the canvas and the PNG agree. Kept in
// this one module (no import): a second fetch would delay the form's handler.
export function boxColour(label) {
  const el = document.getElementById("box-palette");
  const palette = el ? JSON.parse(el.textContent) : ["#d62728"];
  let h = 7;
  for (const c of label) h = (h * 31 + c.codePointAt(0)) % 65521;
  return palette[h % palette.length];
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("The image could not be shown."));
    img.src = src;
  });
}

// The site's one money format (catalog.pricing.format_usd), from the API's exact decimal
// string, never through a float: $0.0002, $0.20, $10, $1,004.9983.
const usd = (amount) => {
  const text = String(amount);
  const sign = text.startsWith("-") ? "-" : "";
  let [whole, frac = ""] = text.replace(/^-/, "").split(".");
  frac = frac.replace(/0+$/, "");
  whole = whole.replace(/^0+(?=\d)/, "").replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${sign}$${whole}${frac ? `.${frac.padEnd(2, "0")}` : ""}`;
};
const ms = (seconds) =>
  seconds >= 1 ? `${seconds.toFixed(2)} s` : `${Math.round((seconds || 0) * 1000)} ms`;
const ordinal = (n) => {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : { 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th";
  return `${n}${suffix}`;
};

// The site's number format (Django's intcomma, the server's "{:,}"): 27,011,762.
const count = (n) => new Intl.NumberFormat("en-US").format(n);

// --- picking an image ----------------------------------------------------------------------
const ACCEPTED = /^image\/(jpeg|png|webp|gif)$/;

// A file the page refuses is not kept anywhere Run could send it from: the file input is
// cleared and Run waits for a file it accepts.
function refuse(text) {
  chosen = null;
  refusal = text;
  if (fileInput) fileInput.value = "";
  const preview = $("demo-chosen");
  if (preview) preview.hidden = true;
  delete root.dataset.chosen;
  $("run").disabled = true;
  showCost(text);
}

function choose(file) {
  if (!file) return;
  if (file.type && !ACCEPTED.test(file.type)) {
    refuse(`That is ${file.type}; choose a JPEG, PNG, WebP or GIF image.`);
    return;
  }
  const limit = Number(form.dataset.maxBytes);
  if (file.size > limit) {
    const [big, most] = fileSizes(file.size, limit);
    refuse(`That file is ${big}; the limit is ${most}.`);
    return;
  }
  chosen = file;
  refusal = "";
  runKey = newKey();
  // A file picked while a Run's upload is on its way is sent by the next Run, not a second
  // one at once (two runs, two charges, one result area): Run stays aria-disabled (busy).
  $("run").disabled = false;
  try {
    // The file input holds it too, so the form and what Run sends agree.
    const transfer = new DataTransfer();
    transfer.items.add(file);
    fileInput.files = transfer.files;
  } catch {}
  const preview = $("demo-chosen");
  if (preview) {
    preview.hidden = false;
    const thumb = preview.querySelector("img");
    if (thumb.src.startsWith("blob:")) URL.revokeObjectURL(thumb.src);
    thumb.src = URL.createObjectURL(file);
    preview.querySelector("span").textContent = `${file.name || "pasted image"} · ${size(file.size)}: press Run.`;
  }
  root.dataset.chosen = file.name || "image";
  refreshCost();
}

async function fromUrl(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const blob = await response.blob();
  const name = new URL(url, location.href).pathname.split("/").pop() || "image.jpg";
  return new File([blob], name, { type: blob.type || "image/jpeg" });
}

function wirePicking() {
  for (const element of root.querySelectorAll(".js-only")) element.hidden = false;
  fileInput.addEventListener("change", () => choose(fileInput.files[0]));
  for (const button of root.querySelectorAll("[data-example]")) {
    button.addEventListener("click", async () => {
      try {
        choose(await fromUrl(button.dataset.example));
      } catch (error) {
        showCost(`The example could not be loaded (${error.message}).`);
      }
    });
    // Dragging an example onto the drop zone drops its address, not a file.
    button.addEventListener("dragstart", (event) => {
      event.dataTransfer.setData("text/uri-list", new URL(button.dataset.example, location.href).href);
    });
  }
  const zone = $("dropzone");
  for (const type of ["dragenter", "dragover"]) {
    root.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("is-over");
    });
  }
  root.addEventListener("dragleave", (event) => {
    if (!root.contains(event.relatedTarget)) zone.classList.remove("is-over");
  });
  root.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("is-over");
    const file = event.dataTransfer.files[0];
    if (file) return choose(file);
    const url = (event.dataTransfer.getData("text/uri-list") || "").split("\n")[0].trim();
    if (!url || new URL(url, location.href).origin !== location.origin) return;
    try {
      choose(await fromUrl(url));
    } catch (error) {
      // Offline, say: the example button's own words, not an unhandled rejection.
      showCost(`The example could not be loaded (${error.message}).`);
    }
  });
  document.addEventListener("paste", (event) => {
    const item = [...(event.clipboardData?.items || [])].find((i) => i.kind === "file");
    const file = item?.getAsFile();
    if (!file) return;
    event.preventDefault();
    choose(file.name ? file : new File([file], "pasted.png", { type: file.type }));
  });
}

// --- what Run costs, asked before it is pressed (the page itself may be cached) ------------
function showCost(text) {
  if (costLine) costLine.textContent = text;
}

async function refreshCost() {
  if (!root?.dataset.stateUrl) return;
  try {
    const state = await getJson(root.dataset.stateUrl);
    root.dataset.pays = state.pays;
    costLine.dataset.pays = state.pays;
    // A refusal said while this was asked (a too-large file picked on a slow link) stays.
    if (refusal) return;
    if (state.pays === "wallet") {
      showCost(`Run costs ${state.cost_display} from your wallet (balance ${state.balance_display}).`);
    } else if (state.free.remaining > 0) {
      showCost(`Free: ${state.free.remaining} of ${state.free.limit} tries left this hour.`);
    } else {
      const minutes = Math.max(1, Math.ceil(state.free.reset / 60));
      const more = state.signed_in ? "Top up your wallet" : "Sign up and top up";
      showCost(`No free tries left this hour (more in ${minutes} min). ${more} to run on your wallet.`);
    }
    costLine.dataset.pays = state.pays;
  } catch {
    // The server-rendered sentence stays.
  }
}

// --- live state ------------------------------------------------------------------------------
function stepOf(data) {
  if (data.status === "queued") return "queued";
  if (data.status === "running") return data.phase === "loading_model" ? "loading" : "running";
  return "done";
}

function describe(data) {
  switch (data.status) {
    case "queued":
      return data.queue_position > 1
        ? `Queued: ${ordinal(data.queue_position)} in line (${data.queue_position - 1} ahead).`
        : "Queued: next in line.";
    case "running":
      return data.phase === "loading_model" ? "Loading the model on a worker…" : "Running the model…";
    case "succeeded":
      return `Done: ${data.detections.length} detections above ${data.floor}; move the threshold or pick classes to filter.`;
    case "cancelled":
      return "Cancelled.";
    default:
      return data.error ? `Failed: ${data.error.message} (${data.error.code})` : "Failed.";
  }
}

function showState(data) {
  const step = stepOf(data);
  const seen = (result.dataset.states || "").split(",").filter(Boolean);
  const label = data.status === "running" ? step : data.status;
  if (seen[seen.length - 1] !== label) result.dataset.states = [...seen, label].join(",");
  result.dataset.state = label;
  say(describe(data));
  const steps = [...document.querySelectorAll("#demo-steps [data-step]")];
  const at = steps.findIndex((li) => li.dataset.step === step);
  const states = result.dataset.states.split(",");
  // A model already loaded on the worker skips its load: that step is not marked done.
  const skipped = (li) =>
    li.dataset.step === "loading" && !states.includes("loading") && data.timings?.load == null;
  steps.forEach((li, i) => {
    li.classList.toggle("is-skipped", i < at && skipped(li));
    li.classList.toggle(
      "is-done",
      (i < at && !skipped(li)) || (i === at && data.status === "succeeded"),
    );
    li.classList.toggle("is-current", i === at && !FINAL.has(data.status));
    li.classList.toggle("is-failed", i === at && FINAL.has(data.status) && data.status !== "succeeded");
  });
}

async function follow(url, first = null) {
  result.hidden = false;
  job = first || (await poll(url));
  let wait = 400;
  for (;;) {
    showState(job);
    if (FINAL.has(job.status)) break;
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(1500, wait * 1.2);
    job = await poll(job.url);
  }
  links();
  const untrained = $("demo-untrained");
  if (untrained) untrained.hidden = !job.weights?.untrained;
  if (job.status !== "succeeded") {
    document.body.dataset.jobStatus = job.status;
    refreshCost();
    return;
  }
  slider.min = String(job.floor); // every detection above the floor came with the job
  for (let tries = 1; ; tries++) {
    try {
      image = await loadImage(job.image_url);
      break;
    } catch (error) {
      if (tries >= 5) throw error;
      say("The result is ready; loading its picture again…");
      await pause(1000 * tries);
    }
  }
  const labels = [...new Set(job.detections.map((d) => d.label))].sort();
  colours.clear();
  // One colour per class, the one the PNG export draws it with (boxColour, below).
  for (const label of labels) colours.set(label, boxColour(label));
  hiddenClasses.clear();
  showTimings();
  buildClasses(labels);
  paint();
  draw();
  document.body.dataset.jobStatus = job.status; // drawn: what tests and scripts wait for
  refreshCost();
}

// --- drawing and re-filtering from the stored result ----------------------------------------
function visible(threshold) {
  return job.detections
    .map((d, i) => ({ ...d, i }))
    .filter((d) => d.score >= threshold && !hiddenClasses.has(d.label));
}

function ensureOverlay() {
  if (overlay) return overlay;
  const stage = canvas.closest(".demo-stage") || canvas.parentElement;
  stage.classList.add("demo-stage");
  overlay = document.createElementNS(SVG, "svg");
  overlay.id = "boxes";
  overlay.setAttribute("class", "demo-boxes");
  stage.append(overlay);
  overlay.addEventListener("mouseover", (event) => highlight(event.target.closest("g.box")?.dataset.i));
  overlay.addEventListener("mouseleave", () => highlight(null));
  return overlay;
}

function highlight(index) {
  for (const element of document.querySelectorAll(".is-hovered")) element.classList.remove("is-hovered");
  if (index == null) return;
  document.querySelector(`#boxes g.box[data-i="${index}"]`)?.classList.add("is-hovered");
  table.querySelector(`tr[data-i="${index}"]`)?.classList.add("is-hovered");
}

// The picture the boxes were found on: the server's image (upright as the worker turned it,
// playground/views.py job_image), on white as the model saw any transparent part, at its own
// size or enlarged by a whole factor (MIN_SIDE); CSS scales the canvas to the page.
function paint() {
  const side = Math.max(job.width, job.height);
  const factor = side < MIN_SIDE ? Math.ceil(MIN_SIDE / side) : 1;
  canvas.width = job.width * factor;
  canvas.height = job.height * factor;
  canvas.classList.toggle("is-pixelated", factor > 1);
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.imageSmoothingEnabled = factor === 1;
  context.drawImage(image, 0, 0, canvas.width, canvas.height);
  shownWidth = 0;
}

// The boxes: an SVG over the canvas in the image's pixel coordinates (viewBox), so hovering
// one is hovering an element; each label LABEL_PX CSS pixels tall whatever the scale.
let measure = null;
function drawBoxes(shown) {
  const svg = ensureOverlay();
  svg.setAttribute("viewBox", `0 0 ${job.width} ${job.height}`);
  svg.replaceChildren();
  shownWidth = canvas.getBoundingClientRect().width;
  const unit = shownWidth > 0 ? job.width / shownWidth : 1; // image px per CSS px
  const font = LABEL_PX * unit;
  const tagHeight = font * 1.35;
  measure ||= document.createElement("canvas").getContext("2d");
  measure.font = `${LABEL_PX}px ${getComputedStyle(svg).fontFamily}`;
  const area = ({ box }) => (box.xmax - box.xmin) * (box.ymax - box.ymin);
  // Larger boxes first, so a small box inside a large one stays on top and can be hovered.
  for (const d of [...shown].sort((a, b) => area(b) - area(a))) {
    const { xmin, ymin, xmax, ymax } = d.box;
    const colour = colours.get(d.label);
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", "box");
    g.dataset.i = String(d.i);
    g.dataset.label = d.label;
    g.style.setProperty("--box", colour);
    const rect = document.createElementNS(SVG, "rect");
    Object.entries({ x: xmin, y: ymin, width: Math.max(1, xmax - xmin), height: Math.max(1, ymax - ymin) })
      .forEach(([k, v]) => rect.setAttribute(k, v));
    // The label stays inside the picture: moved left from the right edge, and one wider
    // than the picture cut with an ellipsis (the box's title keeps the whole label).
    let text = `${d.label} ${d.score.toFixed(2)}`;
    const room = job.width / unit - 6; // CSS px of text the picture's width holds
    if (measure.measureText(text).width > room) {
      while (text.length > 1 && measure.measureText(`${text}…`).width > room) text = text.slice(0, -1);
      text += "…";
    }
    const tag = document.createElementNS(SVG, "rect");
    const top = ymin - tagHeight < 0 ? ymin : ymin - tagHeight;
    const tagWidth = Math.min(job.width, (measure.measureText(text).width + 6) * unit);
    const left = Math.max(0, Math.min(xmin, job.width - tagWidth));
    Object.entries({ x: left, y: top, width: tagWidth, height: tagHeight, class: "tag" })
      .forEach(([k, v]) => tag.setAttribute(k, v));
    const label = document.createElementNS(SVG, "text");
    Object.entries({ x: left + 3 * unit, y: top + tagHeight / 2, "font-size": font, "dominant-baseline": "central" })
      .forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = text;
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${d.label} ${d.score.toFixed(3)} (${xmin}, ${ymin}, ${xmax}, ${ymax})`;
    g.append(title, rect, tag, label);
    svg.append(g);
  }
  svg.dataset.boxes = String(shown.length);
  svg.dataset.labelPx = String(LABEL_PX);
}

// Redrawn for the new scale when the canvas is shown at another width (a rotated phone, a
// resized window): the labels stay LABEL_PX CSS pixels tall.
if (canvas && "ResizeObserver" in window) {
  new ResizeObserver(() => {
    const width = canvas.getBoundingClientRect().width;
    if (job && image && width > 0 && Math.abs(width - shownWidth) > 0.5) {
      drawBoxes(visible(Number(slider.value)));
    }
  }).observe(canvas);
}

function draw() {
  if (!job || !image) return;
  const threshold = Number(slider.value);
  if (sliderValue) sliderValue.textContent = threshold.toFixed(3);
  const shown = visible(threshold);
  drawBoxes(shown);
  table.replaceChildren();
  for (const d of shown) {
    const { xmin, ymin, xmax, ymax } = d.box;
    const row = table.insertRow();
    row.dataset.i = String(d.i);
    const name = row.insertCell();
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colours.get(d.label);
    name.append(swatch, d.label);
    const score = row.insertCell();
    score.className = "num";
    score.textContent = d.score.toFixed(3);
    row.insertCell().textContent = `${xmin}, ${ymin}, ${xmax}, ${ymax}`;
    row.addEventListener("mouseenter", () => highlight(d.i));
    row.addEventListener("mouseleave", () => highlight(null));
  }
  canvas.dataset.boxes = String(shown.length);
  updateClassCounts(threshold);
  showJson(threshold);
  showCall(threshold);
  linkThreshold(threshold);
  const hidden = form?.querySelector("input[name=threshold]");
  if (hidden) hidden.value = String(threshold);
}

// How many boxes a filter left, said to a screen reader (#boxes-shown, a polite live
// region) once the slider or the class chips have been still for ANNOUNCE_MS: dragging
// the slider re-filters at every step, and each step said would flood the reader.
const ANNOUNCE_MS = 600;
let announcing = 0;
function filtered() {
  draw();
  if (!shownLine || !job || !image) return; // nothing drawn yet: nothing to count
  clearTimeout(announcing);
  announcing = setTimeout(() => {
    if (!job || !image) return; // another run started meanwhile
    const total = job.detections.length;
    const shown = visible(Number(slider.value)).length;
    const text = `${count(shown)} of ${count(total)} ${total === 1 ? "box" : "boxes"} shown`;
    if (shownLine.textContent !== text) shownLine.textContent = text;
  }, ANNOUNCE_MS);
}

function buildClasses(labels) {
  if (!classesBox) return;
  classesBox.replaceChildren();
  for (const label of labels) {
    const chip = document.createElement("label");
    chip.className = "chip class-chip";
    chip.title = label; // a long class name may wrap or be cut in the chip
    chip.style.setProperty("--box", colours.get(label));
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = true;
    box.value = label;
    box.addEventListener("change", () => {
      if (box.checked) hiddenClasses.delete(label);
      else hiddenClasses.add(label);
      filtered();
    });
    const count = document.createElement("span");
    count.className = "count";
    chip.append(box, ` ${label} `, count);
    classesBox.append(chip);
  }
}

function updateClassCounts(threshold) {
  if (!classesBox) return;
  for (const chip of classesBox.querySelectorAll(".class-chip")) {
    const label = chip.querySelector("input").value;
    const n = job.detections.filter((d) => d.label === label && d.score >= threshold).length;
    chip.querySelector(".count").textContent = String(n);
    chip.classList.toggle("is-empty", n === 0);
  }
}

// --- the API's JSON, and the same call ---------------------------------------------------------
function apiBody(threshold) {
  // What POST /v1/inference/<model> answers: the kept detections at or above the threshold,
  // in the order it keeps them, each {label, score, box} (playground/serializers.py).
  return job.detections
    .filter((d) => d.score >= threshold)
    .map(({ label, score, box }) => ({ label, score, box }));
}

function showJson(threshold) {
  const code = $("demo-json");
  if (code) code.textContent = JSON.stringify(apiBody(threshold), null, 2);
}

function showCall(threshold) {
  const curl = $("demo-curl");
  const python = $("demo-python");
  if (!curl || !root) return;
  const call = apiCall({
    url: root.dataset.inferenceUrl,
    name: root.dataset.chosen || "image.jpg", // the user's file name, as it is
    type: chosen?.type || "image/jpeg",
    threshold: Number(threshold.toPrecision(6)), // the slider's value, as the JSON tab used it
  });
  curl.textContent = call.curl;
  python.textContent = call.python;
}

function showTimings() {
  if (!timingsLine) return;
  const t = job.timings || {};
  const model = (t.preprocess || 0) + (t.forward || 0) + (t.postprocess || 0);
  const parts = [];
  if (t.queue != null) parts.push(`queue wait ${ms(t.queue)}`);
  if (t.load != null) parts.push(`model load ${ms(t.load)}`);
  if (t.provider != null) parts.push(`provider ${ms(t.provider)}`);
  else parts.push(`model ${ms(model)} (decode ${ms(t.decode)} · preprocess ${ms(t.preprocess)} · forward ${ms(t.forward)} · postprocess ${ms(t.postprocess)})`);
  const paid = job.charge_status && job.cost !== "0";
  parts.push(paid ? `cost ${usd(job.cost)} from your wallet${job.balance ? ` (balance ${usd(job.balance)})` : ""}` : "cost: a free try");
  timingsLine.textContent = parts.join(" · ");
  timingsLine.dataset.cost = job.cost;
}

// The permalink and the downloads open at the slider's threshold, so what is kept or shared is
// what is on the screen (both take ?threshold=, as the API does).
function linkThreshold(threshold) {
  const t = String(Number(threshold.toPrecision(6)));
  for (const a of document.querySelectorAll("#demo-permalink, #demo-exports a")) {
    if (!a.getAttribute("href") || a.getAttribute("href") === "#") continue;
    const url = new URL(a.href, location.href);
    url.searchParams.set("threshold", t);
    a.href = url.pathname + url.search;
  }
}

function links() {
  const permalink = $("demo-permalink");
  if (permalink) permalink.href = job.url;
  const exports = $("demo-exports");
  if (!exports || !root?.dataset.exports || job.status !== "succeeded") return;
  exports.replaceChildren("Download:");
  for (const pair of root.dataset.exports.split(" ")) {
    const [fmt, url] = pair.split("=");
    const a = document.createElement("a");
    a.href = url.replace(root.dataset.zeroId, job.id);
    a.className = "btn btn-sm"; // the permalink's download buttons
    a.textContent = fmt === "coco" ? "COCO JSON" : fmt.toUpperCase();
    exports.append(a);
  }
  if (slider) linkThreshold(Number(slider.value));
}

// --- wiring --------------------------------------------------------------------------------------
slider?.addEventListener("input", filtered);
// /playground: another model's demo opens with the picker's Open button, not on "change":
// Chromium fires "change" for each arrow key in a closed <select>, so opening on it took a
// keyboard user away at the first option they passed (WCAG 3.2.2).

// The run's permalink in the address bar once it is created (as a prediction's page on the
// big sites): a reload or a copied URL shows this run instead of an empty form; Back returns
// to the page it was started from, loaded afresh (site.js reloads on such a traversal).
function remember(permalink) {
  const path = permalink && new URL(permalink, location.href).pathname;
  if (!path || path === location.pathname) return;
  history.pushState({ run: permalink }, "", permalink);
  document.dispatchEvent(new CustomEvent("vitrine:pushed", { detail: path }));
}

if (root && form) {
  wirePicking();
  refreshCost();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (sending) return; // Run pressed again (or Enter) while its upload is on its way
    const file = chosen || fileInput.files[0];
    if (!file) {
      showCost("Choose an image first: drop one, paste one, pick a file or an example.");
      return;
    }
    const body = new FormData(form);
    body.set("image", file, file.name || "image");
    body.set("threshold", slider.value);
    const run = $("run");
    // Busy, said with aria-disabled rather than `disabled`: a disabled button loses focus,
    // which fell to <body> and left a keyboard or screen-reader user at the top of the page.
    run.setAttribute("aria-disabled", "true");
    sending = true;
    result.hidden = false;
    result.dataset.states = "";
    document.body.dataset.jobStatus = "";
    image = null;
    clearTimeout(announcing);
    if (shownLine) shownLine.textContent = "";
    table.replaceChildren();
    if (timingsLine) timingsLine.textContent = "";
    say("Uploading…");
    let created = null;
    try {
      const token = form.querySelector("input[name=csrfmiddlewaretoken]").value;
      const sent = { file, threshold: slider.value };
      try {
        created = await getJson(form.action, {
          method: "POST",
          body,
          headers: { "X-CSRFToken": token, "Idempotency-Key": runKey },
        });
      } finally {
        // The key stays only for the same file and threshold sent again after a lost answer.
        const lost = !created && chosen === sent.file && slider.value === sent.threshold;
        if (!lost) runKey = newKey();
      }
      remember(created.url);
      await follow(created.url, created);
    } catch (error) {
      say(
        error.network && !created
          ? `The upload did not get through (${error.message}). Check your connection and press Run again; a paid run that had reached us is found again, not charged twice.`
          : error.message,
      );
      result.dataset.state = "error";
      refreshCost();
    } finally {
      sending = false;
      run.removeAttribute("aria-disabled");
      run.disabled = !(chosen || fileInput.files[0]);
    }
  });
} else if (result?.dataset.jobUrl) {
  follow(result.dataset.jobUrl).catch((error) => say(error.message));
}
