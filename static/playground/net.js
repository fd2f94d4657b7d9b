// What the page scripts share for asking the server again through a flaky network
// (imported by playground.js, job.js and compare.js; the manifest storage rewrites the
// import to this file's hashed name, catalog/static_files.py).

// Resolves after ms, or sooner when the browser comes back online.
export function pause(ms) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      window.removeEventListener("online", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    window.addEventListener("online", done);
  });
}
