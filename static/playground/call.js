// The "API call" panel of a run (imported by playground.js): the same call, in curl and in
// Python, for the user's own file under its own name, quoted for each language, so either
// runs as shown next to the file. A module of its own, with no page in it: the tests import
// it in Node (tests/playground/test_api_call_panel_s49.py).

// POSIX shell: a name of plain characters as it is, any other single-quoted, each ' in it
// written '\'' (close the quotes, an escaped quote, open them again).
export function shellQuote(text) {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

// A Python string literal: JSON's escapes (\" \\ \n \uXXXX) mean the same in Python.
export function pythonString(text) {
  return JSON.stringify(text);
}

// { curl, python } for POST <url>?threshold=<threshold> with the file <name> of <type>.
export function apiCall({ url, name, type, threshold }) {
  const curl = [
    "# 200: a JSON array of boxes. 202: the call's wait ran out and the job still runs;",
    '# the body is the job: GET its "url" with the same Authorization header until its',
    '# "status" is "succeeded" (its "detections" are the boxes) or "failed".',
    `curl "${url}?threshold=${threshold}" \\`,
    '  -H "Authorization: Bearer $VITRINE_API_KEY" \\',
    `  -H "Content-Type: ${type}" \\`,
    // --fail-with-body: an error answer (a missing file sends an empty body: 400) exits
    // non-zero, its JSON printed; -w: a line end after the JSON.
    `  --data-binary @${shellQuote(name)} --fail-with-body -w '\\n'`,
  ].join("\n");
  const python = [
    "import os, time, uuid",
    "",
    "import requests",
    "",
    "auth = {\"Authorization\": f\"Bearer {os.environ['VITRINE_API_KEY']}\"}",
    "",
    "",
    "def answer(response):",
    '    """The JSON answer, or exit with the API\'s error message."""',
    "    if not response.ok:",
    '        raise SystemExit(response.json()["error"]["message"])',
    "    return response.json()",
    "",
    "",
    "# Keep the Idempotency-Key for a retry of this call (a timeout, a dropped connection):",
    "# the same key answers the same job, charged once.",
    `with open(${pythonString(name)}, "rb") as f:`,
    "    response = requests.post(",
    `        ${pythonString(url)},`,
    `        params={"threshold": ${threshold}},`,
    "        headers={",
    "            **auth,",
    `            "Content-Type": ${pythonString(type)},`,
    '            "Idempotency-Key": str(uuid.uuid4()),',
    "        },",
    "        data=f,",
    "    )",
    "detections = answer(response)",
    "if response.status_code == 202:  # still running after the call's wait: poll the job",
    "    job = detections",
    '    while job["status"] in ("queued", "running"):',
    "        time.sleep(1)",
    '        job = answer(requests.get(job["url"], headers=auth))',
    '    if job["status"] != "succeeded":',
    '        raise SystemExit(job["error"]["message"] if job["error"] else "Job cancelled.")',
    '    detections = job["detections"]',
    "for d in detections:",
    '    print(d["label"], round(d["score"], 3), d["box"])',
  ].join("\n");
  return { curl, python };
}
