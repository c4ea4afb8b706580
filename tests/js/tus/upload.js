// Uploads with tus-js-client for tests/test_resumable_clients.py.
//
// Reads one job as JSON on stdin and prints the outcome as JSON:
//   {"endpoint": url, "protocol": "tus-v1" | "ietf-draft-05", "size": n,
//    "chunkSize": n, "metadata": {...}, "headers": {...},
//    "abortAt": n,       abort once n bytes were sent, then resume with a new
//                        Upload from its URL (as a page does after a reload)
//    "overridePatchMethod": true}   PATCH as POST + X-HTTP-Method-Override
// The bytes are a repeating counter: byte i is (i * 7 + i >> 8) & 255.
// Output: {"url", "bytesSent", "resumedFrom", "responseStatus",
//          "responseBody", "offset", "error"}
"use strict";
const tus = require("tus-js-client");

function payload(size) {
  const data = Buffer.alloc(size);
  for (let i = 0; i < size; i++) { data[i] = (i * 7 + (i >> 8)) & 255; }
  return data;
}

function run(job, data, uploadUrl) {
  return new Promise((resolve) => {
    let aborted = false;
    const options = {
      endpoint: job.endpoint,
      protocol: job.protocol,
      chunkSize: job.chunkSize || Infinity,
      metadata: job.metadata || {},
      headers: job.headers || {},
      retryDelays: [0, 100, 300],
      uploadSize: data.length,
      overridePatchMethod: Boolean(job.overridePatchMethod),
      onProgress(sent) {
        if (job.abortAt && !uploadUrl && !aborted && sent >= job.abortAt) {
          aborted = true;
          upload.abort().then(() => resolve({ aborted: true, url: upload.url, sent }));
        }
      },
      onSuccess(payload) {
        const res = payload && payload.lastResponse;
        resolve({
          url: upload.url,
          responseStatus: res ? res.getStatus() : null,
          responseBody: res ? res.getBody() : null,
          offset: res ? res.getHeader("Upload-Offset") : null,
          messageLocation: res ? res.getHeader("Response-Message-Location") || null : null,
        });
      },
      onError(error) { resolve({ error: String(error) }); },
    };
    if (uploadUrl) { options.uploadUrl = uploadUrl; }
    const upload = new tus.Upload(data, options);
    upload.start();
  });
}

async function main() {
  let input = "";
  for await (const chunk of process.stdin) { input += chunk; }
  const job = JSON.parse(input);
  const data = payload(job.size);
  let outcome = await run(job, data, null);
  if (outcome.aborted) {
    const first = outcome;
    outcome = await run(job, data, first.url);
    outcome.abortedAfter = first.sent;
    outcome.firstUrl = first.url;
  }
  process.stdout.write(JSON.stringify(outcome));
}

main();
