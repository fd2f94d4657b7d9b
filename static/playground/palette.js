// A box's colour, one per class: the palette the server renders into the page
// (<script id="box-palette">, from playground/palette.py, which the PNG export draws with)
// and the same label hash as label_hash() there, so the canvas and the PNG agree.
const FALLBACK = ["#d62728"];

function palette() {
  const el = document.getElementById("box-palette");
  return el ? JSON.parse(el.textContent) : FALLBACK;
}

export function labelHash(label) {
  let h = 7;
  for (const c of label) h = (h * 31 + c.codePointAt(0)) % 65521;
  return h;
}

export function boxColour(label) {
  const colours = palette();
  return colours[labelHash(label) % colours.length];
}
