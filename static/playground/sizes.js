// A file's size as people read it, and a size against the limit it is over, in the words
// of the server's refusal (playground/views.py file_size, file_sizes): decimal units,
// rounded half up exactly (BigInt), trailing zeros dropped: 999 bytes, 1 kB, 12.6 MB.
// Imported by the try page (playground.js) and compare (compare.js).
const count = (n) => new Intl.NumberFormat("en-US").format(n); // the site's 27,011,762
const SIZE_UNITS = [[1000n, "kB"], [1000n ** 2n, "MB"], [1000n ** 3n, "GB"]];

export function size(n, decimals = 1) {
  const bytes = BigInt(n);
  if (bytes < 1000n) return `${count(bytes)} byte${bytes === 1n ? "" : "s"}`;
  const scale = 10n ** BigInt(decimals);
  let text = "";
  for (const [unit, name] of SIZE_UNITS) {
    const scaled = (bytes * scale * 2n + unit) / (2n * unit);
    const fraction = String(scaled % scale).padStart(decimals, "0").replace(/0+$/, "");
    text = `${count(scaled / scale)}${fraction ? `.${fraction}` : ""} ${name}`;
    if (scaled < 1000n * scale) break; // else the next unit up: 999,960 bytes is 1 MB
  }
  return text;
}

// A size and the limit it is over, written with as many decimals as it takes to tell them
// apart (20.98 MB against 20.97 MB, not 21 MB against 21 MB).
export function fileSizes(n, limit) {
  for (let decimals = 1; decimals < 10; decimals++) {
    const [a, b] = [size(n, decimals), size(limit, decimals)];
    if (a !== b) return [a, b];
  }
  return [`${count(n)} bytes`, `${count(limit)} bytes`];
}
