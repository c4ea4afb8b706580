// Runs one call of the wsgiprogress client under Node for tests/test_js_client.py:
// reads {"call": name, "args": [...]} as JSON on stdin, prints the JSON result.
"use strict";
const client = require("../../wsgiprogress/static/progress.js");
let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const request = JSON.parse(input);
  let result;
  if (request.call === "samples") {
    // successive answers at the given times (ms), through the estimator
    const estimator = new client.Estimator();
    result = request.args[0].map(([time, body]) => {
      const p = estimator.add(client.normalize(JSON.parse(body)), time);
      return Object.assign(p, { text: client.describe(p) });
    });
  } else {
    result = client[request.call](...request.args);
  }
  process.stdout.write(JSON.stringify(result));
});
