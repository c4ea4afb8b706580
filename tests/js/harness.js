// Runs the wsgiprogress client under Node for tests/test_js_client.py.
//
// Reads one request as JSON on stdin and prints {"result", "error",
// "mathRandomCalls"} as JSON:
//
//   {"call": name, "args": [...]}            client[name](...args)
//   {"call": name, "args": [...], "repeat": n}   n calls, their results as a list
//   {"call": "samples", "args": [[[time, body], ...]]}
//                                            successive answers through the estimator
//   {"call": "upload", "args": [scenario]}   upload() against a fake XMLHttpRequest
//                                            (see uploadScenario below)
//   {"call": "track", "args": [scenario]}    track() alone in the same fake browser
//   "crypto": "none" | "getRandomValues" | "randomUUID" | "msCrypto"
//                                            what globalThis.crypto offers (default: Node's;
//                                            msCrypto: none, but IE 11's msCrypto)
//
// Math.random is replaced by a stub that counts its calls and throws: the
// client must never use it.
"use strict";
const client = require("../../wsgiprogress/static/progress.js");

let mathRandomCalls = 0;
Math.random = function () {
  mathRandomCalls += 1;
  throw new Error("Math.random was called");
};

const nodeCrypto = globalThis.crypto;

function setCrypto(offer) {
  if (offer === undefined) { return; }
  delete globalThis.crypto;
  if (offer === "getRandomValues") {
    globalThis.crypto = { getRandomValues: (bytes) => nodeCrypto.getRandomValues(bytes) };
  } else if (offer === "randomUUID") {
    globalThis.crypto = { randomUUID: () => nodeCrypto.randomUUID() };
  } else if (offer === "msCrypto") {  // Internet Explorer 11's prefixed name
    globalThis.msCrypto = { getRandomValues: (bytes) => nodeCrypto.getRandomValues(bytes) };
  } else if (offer !== "none") {
    throw new Error("unknown crypto offer " + offer);
  }
}

/*
 * One upload() in a fake browser.  The scenario:
 *
 *   page       the page's URL (default http://app.test/page)
 *   form       the form's action: upload(form) of a fake <form>; without it,
 *              upload(FormData) of a fake FormData
 *   options    upload's options; "bar": true and "text": true give fake
 *              elements; onProgress, onDone and onError are recorded unless
 *              "callbacks" is false
 *   probes     the probe's successive JSON answers (the last one repeats); one
 *              {"http": status, "headers": {...}, "text": body} is an answer
 *              of that status instead (an error, a refusal)
 *   uploadAfter  the upload is answered after this many probe answers
 *   uploadAfterMs  and not before this many ms after it was sent
 *   upload     the upload's answer: {status, responseText, redirectTo (the URL
 *              a redirect led to: xhr.responseURL), error (a network error)}
 *   cancelAfter  the page calls job.cancel() after this many probe answers;
 *              the DELETE is answered cancelStatus (default 200)
 *   probeText  the probe's raw answer instead (a page that is not the probe)
 *   throwing   the page's onProgress throws after it is recorded; what is
 *              thrown out of an XHR's listeners is counted in "uncaught"
 *
 *   track      call track(options.id) alone instead: nothing is posted
 *
 * The result: requests [[method, url]] (and when each was sent, "sentAt",
 * in ms from the start), events in order (["progress", state,
 * status], ["done", state, percent, status], ["error", reason, status],
 * ["answered", status], ["assign", url], ["cancel", ok, status]), assigned
 * URLs, the bar and text.
 */
function uploadScenario(s) {
  const log = { requests: [], sentAt: [], events: [], assigned: [], uncaught: 0 };
  const started = Date.now();
  const bar = { value: 0, max: 0 };
  const text = { textContent: "" };
  const page = s.page || "http://app.test/page";
  const bare = (url) => { const u = new URL(url, page); u.hash = ""; return u.href; };

  globalThis.location = {
    href: page,
    assign(url) { log.assigned.push(url); log.events.push(["assign", url]); }
  };
  class FakeForm {
    constructor(action) { this.action = action; }
    getAttribute(name) { return name === "action" ? this.action : null; }
  }
  class FakeFormData { constructor(form) { this.form = form || null; } }
  globalThis.HTMLFormElement = FakeForm;
  globalThis.FormData = FakeFormData;

  let probeAnswers = 0;
  let pendingUpload = null;
  let uploadDue = !s.uploadAfterMs;

  class FakeXMLHttpRequest {
    constructor() {
      this.listeners = {};
      this.status = 0;
      this.responseText = "";
      this.responseURL = "";
      this.headers = {};
    }
    getResponseHeader(name) {
      const key = Object.keys(this.headers).find((k) => k.toLowerCase() === name.toLowerCase());
      return key === undefined ? null : this.headers[key];
    }
    addEventListener(type, listener) { (this.listeners[type] = this.listeners[type] || []).push(listener); }
    open(method, url) { this.method = method; this.url = url; }
    send(body) {
      log.requests.push([this.method, this.url]);
      log.sentAt.push(Date.now() - started);
      if (this.method === "POST") {
        this.body = body;
        pendingUpload = this;
        setTimeout(() => { uploadDue = true; answerUpload(); }, s.uploadAfterMs || 0);
      } else if (this.method === "DELETE") {
        setTimeout(() => { this.status = s.cancelStatus || 200; this.fire("load"); }, 0);
      } else {
        setTimeout(() => answerProbe(this), 0);
      }
    }
    fire(type) {
      // as a browser does: what a listener throws is reported, and stops nothing else
      const report = (call) => { try { call(); } catch (e) { log.uncaught += 1; } };
      if (typeof this["on" + type] === "function") { report(() => this["on" + type]()); }
      for (const listener of this.listeners[type] || []) { report(() => listener.call(this)); }
    }
  }
  globalThis.XMLHttpRequest = FakeXMLHttpRequest;

  function answerProbe(xhr) {
    if (probeAnswers >= 200) { return; }  // a scenario that never ends: leave it pending
    const body = s.probes[Math.min(probeAnswers, s.probes.length - 1)];
    probeAnswers += 1;
    if (typeof body.http === "number") {  // an answer that is not the probe's JSON
      xhr.status = body.http;
      xhr.headers = body.headers || {};
      xhr.responseText = body.text || "";
    } else {
      xhr.status = 200;
      xhr.responseText = s.probeText !== undefined ? s.probeText : JSON.stringify(body);
    }
    xhr.responseURL = bare(xhr.url);
    xhr.fire("load");
    if (probeAnswers === s.cancelAfter) {
      job.cancel((ok, status) => log.events.push(["cancel", ok, status]));
    }
    answerUpload();
  }

  function answerUpload() {
    const xhr = pendingUpload;
    if (!xhr || !uploadDue || probeAnswers < (s.uploadAfter || 0)) { return; }
    pendingUpload = null;
    const answer = s.upload || {};
    if (answer.error) {
      log.events.push(["answered", 0]);
      xhr.fire("error");
      return;
    }
    xhr.status = answer.status || 200;
    xhr.responseText = answer.responseText || "";
    xhr.responseURL = answer.redirectTo ? bare(answer.redirectTo) : bare(xhr.url);
    log.events.push(["answered", xhr.status]);
    xhr.fire("load");
  }

  const options = Object.assign({}, s.options);
  if (options.bar === true) { options.bar = bar; }
  if (options.text === true) { options.text = text; }
  if (s.callbacks !== false) {
    options.onProgress = (p) => {
      log.events.push(["progress", p.state, p.status]);
      if (s.throwing) { throw new Error("the page's own bug"); }
    };
    options.onDone = (p) => log.events.push(["done", p.state, p.percent, p.status]);
    options.onError = (p) => log.events.push(["error", p.reason, p.status]);
  }
  let job = null;
  if (s.track) {
    log.id = options.id;
    client.track(options.id, options);
  } else {
    const subject = s.form !== undefined ? new FakeForm(s.form) : new FakeFormData();
    job = client.upload(subject, options);
    log.id = job.id;
    log.sent = job.xhr.body === subject ||
      (job.xhr.body instanceof FakeFormData && job.xhr.body.form === subject);
  }
  return new Promise((resolve) => {
    process.once("beforeExit", () => resolve(Object.assign(log, { bar, text })));
  });
}

async function run(request) {
  setCrypto(request.crypto);
  const args = request.args || [];
  if (request.call === "samples") {
    const estimator = new client.Estimator();
    return args[0].map(([time, body]) => {
      const p = estimator.add(client.normalize(JSON.parse(body)), time);
      return Object.assign(p, { text: client.describe(p) });
    });
  }
  if (request.call === "upload" || request.call === "track") {
    return uploadScenario(Object.assign({ track: request.call === "track" }, args[0]));
  }
  if (request.repeat !== undefined) {
    const results = [];
    for (let i = 0; i < request.repeat; i++) { results.push(client[request.call](...args)); }
    return results;
  }
  return client[request.call](...args);
}

let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  run(JSON.parse(input)).then(
    (result) => ({ result: result === undefined ? null : result }),
    (error) => ({ error: { name: error.name, message: error.message } })
  ).then((answer) => {
    answer.mathRandomCalls = mathRandomCalls;
    process.stdout.write(JSON.stringify(answer));
  });
});
