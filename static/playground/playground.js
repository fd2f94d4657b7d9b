// The try-it page: send the image, poll the job, draw the boxes. The page works without
// this script (the form posts and the result page refreshes itself) except the canvas.
const form = document.getElementById("try-form");
const result = document.getElementById("result");
const canvas = document.getElementById("canvas");
const slider = document.getElementById("threshold");
const sliderValue = document.getElementById("threshold-value");
const statusLine = document.getElementById("status");
const table = document.getElementById("detections");
const timingsLine = document.getElementById("timings");
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
let job = null;
let image = null;

function csrfToken() {
  return form.querySelector("input[name=csrfmiddlewaretoken]").value;
}

async function getJson(url, options = {}) {
  const response = await fetch(url, { ...options, headers: { Accept: "application/json", ...(options.headers || {}) } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  return body;
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
    img.onerror = reject;
    img.src = src;
  });
}

function draw() {
  if (!job || !image) return;
  const threshold = Number(slider.value);
  sliderValue.textContent = threshold.toFixed(2);
  const scale = Math.min(1, 960 / job.width);
  canvas.width = Math.round(job.width * scale);
  canvas.height = Math.round(job.height * scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  const shown = (job.detections || []).filter((d) => d.score >= threshold);
  ctx.lineWidth = 2;
  ctx.font = "14px system-ui, sans-serif";
  table.replaceChildren();
  for (const d of shown) {
    const { xmin, ymin, xmax, ymax } = d.box;
    ctx.strokeStyle = ctx.fillStyle = boxColour(d.label);
    ctx.strokeRect(xmin * scale, ymin * scale, (xmax - xmin) * scale, (ymax - ymin) * scale);
    const text = `${d.label} ${d.score.toFixed(2)}`;
    const width = ctx.measureText(text).width + 6;
    ctx.fillRect(xmin * scale, Math.max(0, ymin * scale - 18), width, 18);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, xmin * scale + 3, Math.max(13, ymin * scale - 5));
    const row = table.insertRow();
    for (const value of [d.label, d.score.toFixed(3), `${xmin}, ${ymin}, ${xmax}, ${ymax}`]) {
      row.insertCell().textContent = value;
    }
  }
  canvas.dataset.boxes = String(shown.length);
}

async function follow(url) {
  result.hidden = false;
  for (;;) {
    job = await getJson(url);
    statusLine.textContent = `Status: ${job.status}`;
    if (FINAL.has(job.status)) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  if (job.error) {
    statusLine.textContent = `${job.error.message} (${job.error.code})`;
    return;
  }
  slider.min = String(job.floor);  // every detection above the floor came back with the job
  image = await loadImage(job.image_url);
  const t = job.timings || {};
  const ms = (s) => `${Math.round((s || 0) * 1000)} ms`;
  timingsLine.textContent = `decode ${ms(t.decode)} · preprocess ${ms(t.preprocess)} · forward ${ms(t.forward)} · postprocess ${ms(t.postprocess)}`;
  statusLine.textContent = `Done: ${job.detections.length} detections above ${job.floor}; move the threshold to filter.`;
  document.body.dataset.jobStatus = job.status;
  draw();
}

slider?.addEventListener("input", draw);

if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = form.querySelector("input[type=file]").files[0];
    if (!file) return;
    if (file.size > Number(form.dataset.maxBytes)) {
      statusLine.textContent = "That file is too large.";
      result.hidden = false;
      return;
    }
    statusLine.textContent = "Uploading…";
    result.hidden = false;
    try {
      const created = await getJson(form.action || location.href, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-CSRFToken": csrfToken() },
      });
      history.replaceState(null, "", location.pathname);
      await follow(created.url);
    } catch (error) {
      statusLine.textContent = error.message;
    }
  });
} else if (result?.dataset.jobUrl) {
  follow(result.dataset.jobUrl).catch((error) => (statusLine.textContent = error.message));
}
