/*
 * wsgiprogress client: upload progress bars for the wsgiprogress probe.
 *
 * No dependencies.  In a page:
 *
 *   <script src="/static/progress.js"></script>
 *   <form id="f" action="/upload" method="post" enctype="multipart/form-data">...</form>
 *   <progress id="bar" max="100" value="0"></progress> <span id="info"></span>
 *   <script>
 *     WSGIProgress.upload(document.getElementById("f"), {
 *       bar: "#bar", text: "#info",
 *       onDone: function (p) { ... }, onError: function (p) { ... }
 *     });
 *   </script>
 *
 * It understands the probe's three dialects (native, lighttpd, nginx), follows
 * progress by server-sent events when the browser has EventSource and the
 * dialect is native, and polls otherwise.  A form whose POST answers with a
 * redirect (Post/Redirect/Get) still navigates there (option follow).  Under
 * Node it exports the same object, for tests.  Reference: docs/js-client.md.
 */
(function (root) {
  "use strict";

  var ID_PARAM = "X-Progress-ID";
  var INTERVAL = 500;  // ms between polls, unless options.interval
  var FINAL = { done: true, error: true };

  /* A random ID of 32 lowercase hex digits: 128 bits from
     crypto.getRandomValues, or crypto.randomUUID's 122 without its dashes.
     Never Math.random (a guessable ID lets others read the upload's progress):
     without either, it throws, and the page can pass an ID of its own. */
  function makeId() {
    var cryptoObj = root.crypto || root.msCrypto;
    var hex = "";
    if (cryptoObj && typeof cryptoObj.getRandomValues === "function") {
      var bytes = new Uint8Array(16);
      cryptoObj.getRandomValues(bytes);
      for (var i = 0; i < 16; i++) { hex += (bytes[i] + 256).toString(16).slice(1); }
      return hex;
    }
    if (cryptoObj && typeof cryptoObj.randomUUID === "function") {
      return cryptoObj.randomUUID().replace(/-/g, "").toLowerCase();
    }
    throw new Error("WSGIProgress.makeId: this browser has neither crypto.getRandomValues " +
      "nor crypto.randomUUID, so it cannot make an unguessable progress ID; " +
      "pass options.id (32 random hex digits, e.g. made by the server) instead");
  }

  /* url with X-Progress-ID=id, replacing an old ID and keeping the rest of the
     query and the fragment (jquery.uploadProgress appended "?" blindly). */
  function withId(url, id, name) {
    name = name || ID_PARAM;
    var hash = "";
    var hashAt = url.indexOf("#");
    if (hashAt >= 0) { hash = url.slice(hashAt); url = url.slice(0, hashAt); }
    var queryAt = url.indexOf("?");
    var base = queryAt >= 0 ? url.slice(0, queryAt) : url;
    var pairs = queryAt >= 0 ? url.slice(queryAt + 1).split("&") : [];
    var kept = [];
    for (var i = 0; i < pairs.length; i++) {
      var key = pairs[i].split("=")[0];
      var decoded;
      try { decoded = decodeURIComponent(key.replace(/\+/g, " ")); } catch (e) { decoded = key; }
      if (pairs[i] !== "" && decoded.toLowerCase() !== name.toLowerCase()) { kept.push(pairs[i]); }
    }
    kept.push(encodeURIComponent(name) + "=" + encodeURIComponent(id));
    return base + "?" + kept.join("&") + hash;
  }

  /* One probe answer of any dialect, as {state, received, size, percent, speed, eta, status}. */
  function normalize(data) {
    var state = data.state;
    var size = null;
    if ("request_size" in data) {                    // lighttpd mod_progress
      state = { running: "uploading" }[state] || state;
      size = data.request_size >= 0 ? data.request_size : null;
    } else if (typeof data.size === "number" && data.size >= 0) {
      size = data.size;                              // native and nginx
    }
    var received = typeof data.received === "number" ? data.received : 0;
    if (state === "done" && size !== null && !("received" in data)) { received = size; }
    var percent = null;
    if (state === "done") {
      percent = 100;
    } else if (size) {
      percent = Math.min(100, Math.floor(100 * received / size));
    } else if (size === 0 && state === "processing") {
      percent = 100;
    }
    return {
      state: state, received: received, size: size, percent: percent,
      speed: typeof data.speed === "number" ? data.speed : null,
      eta: typeof data.eta === "number" ? data.eta : null,
      status: typeof data.status === "number" ? data.status : null,
      reason: data.reason || null,
      files: data.files || null
    };
  }

  /* Speed and ETA from successive samples, for dialects that lack them. */
  function Estimator() { this.samples = []; }
  Estimator.prototype.add = function (p, now) {
    this.samples.push([now, p.received]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 5000) { this.samples.shift(); }
    if (p.speed === null && this.samples.length > 1) {
      var first = this.samples[0];
      var seconds = (now - first[0]) / 1000;
      p.speed = seconds > 0 ? (p.received - first[1]) / seconds : null;
    }
    if (p.eta === null && p.speed && p.size !== null && p.state === "uploading") {
      p.eta = Math.max(0, p.size - p.received) / p.speed;
    }
    return p;
  };

  function humanBytes(n) {
    var units = ["B", "kB", "MB", "GB", "TB"];
    var i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : String(Math.round(n))) + " " + units[i];
  }

  /* "42 % · 1.2 MB/s · 12 s left" */
  function describe(p) {
    var parts = [];
    if (p.state === "done") { return "done"; }
    if (p.state === "error") { return "failed" + (p.status ? " (" + p.status + ")" : ""); }
    if (p.state === "processing") { return "processing…"; }
    parts.push(p.percent !== null ? p.percent + " %" : humanBytes(p.received));
    if (p.speed) { parts.push(humanBytes(p.speed) + "/s"); }
    if (p.eta !== null && p.eta !== undefined && p.state === "uploading") {
      parts.push(Math.ceil(p.eta) + " s left");
    }
    return parts.join(" · ");
  }

  function element(target) {
    if (!target || typeof document === "undefined") { return target || null; }
    return typeof target === "string" ? document.querySelector(target) : target;
  }

  function show(options, p) {
    var bar = element(options.bar);
    if (bar && p.percent !== null) {
      if ("value" in bar && "max" in bar) { bar.max = 100; bar.value = p.percent; }
      else if (bar.style) { bar.style.width = p.percent + "%"; }
    }
    var text = element(options.text);
    if (text) { text.textContent = describe(p); }
  }

  /* A client error that asking again cannot mend (not 408 Request Timeout,
     not 429 Too Many Requests). */
  function isRefusal(status) {
    return status >= 400 && status < 500 && status !== 408 && status !== 429;
  }

  /* The ms a 429 or 503 answer asks to wait (Retry-After: seconds or an
     HTTP date), else 0. */
  function retryAfter(xhr) {
    var asks = xhr.status === 429 || xhr.status === 503;
    var value = asks ? xhr.getResponseHeader("Retry-After") : null;
    if (!value) { return 0; }
    var ms = /^\s*\d+\s*$/.test(value) ? 1000 * parseInt(value, 10)
      : Date.parse(value) - Date.now();
    return ms > 0 ? ms : 0;
  }

  /* The probe's URL for id: options.url (default /progress), options.idName
     (default X-Progress-ID, as the server's id_name), options.dialect. */
  function probeUrlFor(id, options, extra) {
    return withId(options.url || "/progress", id, options.idName) + "&dialect=" +
      encodeURIComponent(options.dialect || "native") + "&format=json" + (extra || "");
  }

  /*
   * Follow the progress of `id`.  Options: url ("/progress"), idName
   * ("X-Progress-ID"), dialect ("native"), interval (500 ms), maxUnknown (20
   * answers "unknown" in a row stop it; pushed, "unknown" for maxUnknown x
   * interval ms, as the server says it only once), maxErrors (5 network
   * errors in a row stop it), push (true: use EventSource when possible),
   * bar, text, onProgress, onDone, onError.  Returns {stop: function}.
   * A 4xx answer of the probe (not 408 or 429: asking again cannot help)
   * ends it at once: onError with reason "refused" and the probe's status.
   */

  function track(id, options) {
    options = options || {};
    var dialect = options.dialect || "native";
    var interval = options.interval || INTERVAL;
    var maxUnknown = options.maxUnknown || 20;
    var maxErrors = options.maxErrors || 5;
    var estimator = new Estimator();
    var unknown = 0, errors = 0, stopped = false, timer = null, source = null;
    var lastStatus = null;  // of the last failed poll that was answered
    var unknownTimer = null;

    function finish(p) {
      stop();
      if (p.state === "done") { if (options.onDone) { options.onDone(p); } }
      else if (options.onError) { options.onError(p); }
    }

    function giveUp(reason, status) {
      finish({ state: "error", reason: reason, status: status || null });
    }

    /* A stream says "unknown" once, not at every interval: give it the time
       that maxUnknown polls would take. */
    function watchUnknown(isUnknown) {
      if (!isUnknown || !source) {
        if (unknownTimer) { clearTimeout(unknownTimer); unknownTimer = null; }
      } else if (!unknownTimer) {
        unknownTimer = setTimeout(function () { giveUp("unknown"); }, maxUnknown * interval);
      }
    }

    function handle(data) {
      var p = estimator.add(normalize(data), Date.now());
      unknown = p.state === "unknown" ? unknown + 1 : 0;
      show(options, p);
      try {
        if (options.onProgress) { options.onProgress(p); }
      } finally {  // the page's error is its own: the end is still heard
        if (FINAL[p.state]) { finish(p); }
        else if (unknown >= maxUnknown) { giveUp("unknown"); }
        else { watchUnknown(unknown > 0); }
      }
    }

    function probeUrl(extra) { return probeUrlFor(id, options, extra); }

    function poll() {
      if (stopped) { return; }
      var xhr = new root.XMLHttpRequest();
      xhr.open("GET", probeUrl("&_=" + Date.now()));
      xhr.onload = function () {
        if (stopped) { return; }
        var data = null;
        if (xhr.status === 200) {
          try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
        }
        if (data === null || typeof data !== "object") {
          // 403 (authorize), 400, a wrong url's 404 or 405: the same next time
          if (isRefusal(xhr.status)) { return giveUp("refused", xhr.status); }
          // 5xx (a restarting server), 408, 429, a page at a wrong url: again later
          lastStatus = xhr.status === 200 ? null : xhr.status;
          return failed(retryAfter(xhr));
        }
        errors = 0;
        // the next poll first: a page's callback that throws stops nothing
        timer = setTimeout(poll, interval);
        handle(data);
      };
      xhr.onerror = function () { lastStatus = null; failed(0); };
      xhr.send();
    }

    function failed(wait) {
      errors += 1;
      if (errors >= maxErrors) { giveUp("network", lastStatus); }
      else if (!stopped) { timer = setTimeout(poll, Math.max(interval * errors, wait)); }
    }

    function stop() {
      stopped = true;
      if (timer) { clearTimeout(timer); }
      watchUnknown(false);
      if (source) { source.close(); }
    }

    if (options.push !== false && dialect === "native" && root.EventSource) {
      source = new root.EventSource(probeUrl("&transport=sse"));
      source.onmessage = function (event) { handle(JSON.parse(event.data)); };
      source.onerror = function () {
        // no push here (an old server, a proxy): fall back to polling
        if (!stopped) { source.close(); source = null; watchUnknown(false); poll(); }
      };
    } else {
      poll();
    }
    return { stop: stop };
  }

  /* Ask the server to cancel the upload of `id`: DELETE on the probe URL
     (options url, idName), with options.token as a bearer token when given
     (else the server's authorize hook decides).  done(ok, status) hears the
     answer: 200 cancelled, 202 sent to the server process that runs it (the
     probe shows the end), 404 not running, 403 not allowed; ok for 200 and
     202.  On our server the upload itself is answered 409 "upload
     cancelled" and closed. */
  function cancel(id, options, done) {
    options = options || {};
    var xhr = new root.XMLHttpRequest();
    xhr.open("DELETE", withId(options.url || "/progress", id, options.idName));
    if (options.token) { xhr.setRequestHeader("Authorization", "Bearer " + options.token); }
    xhr.onload = function () {
      if (done) { done(xhr.status === 200 || xhr.status === 202, xhr.status); }
    };
    xhr.onerror = function () { if (done) { done(false, 0); } };
    xhr.send();
    return xhr;
  }

  /* url made absolute against the page and without its fragment, as
     xhr.responseURL is, so the two compare equal when nothing redirected. */
  function absolute(url) {
    var resolved = url;
    if (typeof root.URL === "function" && root.location && root.location.href) {
      try { resolved = new root.URL(url, root.location.href).href; } catch (e) { resolved = url; }
    }
    var hashAt = resolved.indexOf("#");
    return hashAt >= 0 ? resolved.slice(0, hashAt) : resolved;
  }

  function isRedirect(status) { return status >= 300 && status < 400; }

  /* Where the browser posts `form`: its action attribute, or the page's URL
     without one (HTML).  Not form.action: a field named "action" hides it. */
  function formAction(form) { return form.getAttribute("action") || root.location.href; }

  /*
   * Upload a form (or FormData with options.action) with XHR while following
   * its progress on the server (the options of track, plus id, action and
   * follow).  Returns {id, xhr, tracker, cancel}: cancel(done) asks the
   * server to stop the upload (see cancel; options.token), and onError then
   * hears reason "cancelled" (unless the upload was answered with a success
   * first: a cancel too late leaves it done).  A probe that refuses or keeps
   * failing (track's "refused", "network") is asked no more, and the upload's
   * answer ends it: onError "network" comes from the upload alone.
   *
   * follow (default: true for a <form>, false for FormData): when the server
   * answered the upload with a redirect (Post/Redirect/Get: the XHR's final
   * URL, xhr.responseURL, is not the URL it posted to, or the native probe
   * reports a 3xx status), go where the redirect led with location.assign,
   * as the browser would have without this client.  An answer that did not
   * redirect (JSON, say) leaves the page where it is.
   */
  function upload(formOrData, options) {
    options = options || {};
    var id = options.id || makeId();
    var isForm = typeof root.HTMLFormElement !== "undefined" && formOrData instanceof root.HTMLFormElement;
    var data = isForm ? new root.FormData(formOrData) : formOrData;
    var action = options.action || (isForm ? formAction(formOrData) : "/upload");
    var follow = options.follow === undefined ? isForm : !!options.follow;
    var target = withId(action, id, options.idName);
    var loaded = false, redirected = false, settled = false, navigated = false, last = null;
    var cancelled = false, seen = false, silent = false;
    // while the page's cancel is unanswered, a failed upload waits for it
    // (held): only an accepted cancel makes the failure "cancelled"
    var cancelling = false, held = null;

    // track's callbacks, watched: did the probe see a redirect, has it ended?
    var watched = {};
    for (var key in options) {
      if (Object.prototype.hasOwnProperty.call(options, key)) { watched[key] = options[key]; }
    }
    watched.onProgress = function (p) {
      last = p;
      // nginx says "starting" for an ID it does not know too
      if (p.state !== "unknown" && p.state !== "starting") { seen = true; }
      if (isRedirect(p.status)) { redirected = true; }
      if (options.onProgress) { options.onProgress(p); }
    };
    watched.onDone = function (p) {
      settled = true;
      if (options.onDone) { options.onDone(p); }
      navigate();
    };
    var failed = false;  // onError is heard once, from the probe or the XHR
    watched.onError = function (p) {
      if (p.reason === "unknown" && !loaded) {
        // not seen yet, the upload still going: its answer will tell (endUnseen)
        tracker = track(id, watched);
        return;
      }
      if (p.reason === "refused" || p.reason === "network") {
        // the probe will tell nothing (authorize, a wrong url) or could not
        // (a store down): progress is lost, not the upload; the answer will tell
        silent = true;
        if (loaded) { endWithAnswer(); }
        return;
      }
      settled = true;
      if (!failed && options.onError) { failed = true; options.onError(p); }
    };

    var xhr = new root.XMLHttpRequest();
    xhr.open("POST", target);

    function navigate() {
      var to = xhr.responseURL;
      if (!follow || !loaded || navigated || !to) { return; }
      if (!redirected && absolute(to) === absolute(target)) { return; }
      navigated = true;
      if (tracker) { tracker.stop(); }
      if (!settled) {
        // the answer has come, so the upload is over whatever the probe last said
        var done = normalize(last ? { state: "done", size: last.size, received: last.size !== null
          ? last.size : last.received, status: last.status } : { state: "done" });
        show(options, done);
        settled = true;
        if (options.onDone) { options.onDone(done); }
      }
      root.location.assign(to);
    }

    var tracker = track(id, watched);

    /* Answered, and the probe will not tell how it ended: the server did not
       track it (a buffering proxy in front, a full store) and never will, or
       the probe refused or failed to tell (endWithAnswer).  Its answer ends it, status
       and all; reason "unknown" if it failed. */
    function endUnseen() { if (!seen) { endWithAnswer(); } }

    function endWithAnswer() {
      if (settled || navigated) { return; }
      tracker.stop();
      var p = normalize({ state: xhr.status < 400 ? "done" : "error", status: xhr.status,
        reason: xhr.status < 400 ? null : "unknown" });
      show(options, p);
      if (p.state === "done") { watched.onDone(p); } else { watched.onError(p); }
    }

    function fail(reason) {
      tracker.stop();
      settled = true;
      if (!failed && options.onError) {
        failed = true;
        options.onError({ state: "error", reason: reason, status: null });
      }
    }
    function answered() {
      // the server's answer to a cancelled upload (see cancel), or a failure
      // after the page's cancel was accepted; a success came before the cancel could stop it
      if ((xhr.status === 409 && xhr.responseText === "upload cancelled\n") ||
          (cancelled && xhr.status >= 400)) {
        fail("cancelled");
        return;
      }
      if (cancelling && xhr.status >= 400) { held = answered; return; }
      navigate();
      if (silent) { endWithAnswer(); }
      // a probe answer on its way may still tell of it
      else if (!seen) { setTimeout(endUnseen, 3 * (options.interval || INTERVAL)); }
    }
    function broken() {
      if (cancelling) { held = broken; return; }
      fail(cancelled ? "cancelled" : "network");
    }
    xhr.addEventListener("load", function () { loaded = true; answered(); });
    xhr.onerror = broken;
    xhr.send(data);
    return {
      id: id, xhr: xhr, tracker: { stop: function () { tracker.stop(); } },
      cancel: function (done) {
        cancelling = true;
        return cancel(id, options, function (ok, status) {
          cancelling = false;
          cancelled = cancelled || ok;
          var then = held;
          held = null;
          if (then) { then(); }
          if (done) { done(ok, status); }
        });
      }
    };
  }

  /* Give a plain <form> an ID (options.id, or a new one) and follow it while
     the browser submits it: the browser itself follows any redirect.  A form
     without an action posts to the page's own URL (HTML), query and all. */
  function attach(form, options) {
    options = options || {};
    var id = options.id || makeId();
    form.setAttribute("action", withId(formAction(form), id, options.idName));
    return { id: id, start: function () { return track(id, options); } };
  }

  var api = {
    makeId: makeId, withId: withId, probeUrlFor: probeUrlFor, normalize: normalize,
    Estimator: Estimator,
    describe: describe, track: track, upload: upload, attach: attach, cancel: cancel
  };
  if (typeof module !== "undefined" && module.exports) { module.exports = api; }
  else { root.WSGIProgress = api; }
})(typeof window !== "undefined" ? window : globalThis);
