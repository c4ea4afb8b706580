// Runs WSGIProgress.resumable (wsgiprogress/static/resumable.js) under Node
// for tests/test_resumable_js.py, with Node's own fetch and Blob.
//
// Reads {"options": {...}, "size": n} as JSON on stdin; the Blob holds a
// repeating counter (byte i is i & 255).  Prints {"result", "retries",
// "error"} as JSON.
"use strict";
const client = require("../../wsgiprogress/static/resumable.js");

async function main() {
  let input = "";
  for await (const chunk of process.stdin) { input += chunk; }
  const job = JSON.parse(input);
  const data = Buffer.alloc(job.size);
  for (let i = 0; i < job.size; i++) { data[i] = i & 255; }
  const retries = [];
  const options = Object.assign({ track: false }, job.options,
    { onRetry: (offset) => retries.push(offset) });
  const upload = client.resumable(new Blob([data]), options);
  try {
    const result = await upload.promise;
    process.stdout.write(JSON.stringify({ id: upload.id, result, retries }));
  } catch (error) {
    process.stdout.write(JSON.stringify({ id: upload.id, error: String(error), retries }));
  }
}

main();
