/*
 * wsgiprogress client, resumable mode: uploads a File or Blob so that a
 * network drop costs at most one chunk, and shows its progress on the server.
 *
 * Load it after progress.js; it adds WSGIProgress.resumable:
 *
 *   <script src="/static/progress.js"></script>
 *   <script src="/static/resumable.js"></script>
 *   <script>
 *     var upload = WSGIProgress.resumable(input.files[0], {
 *       action: "/upload", bar: "#bar", text: "#info",
 *       onRetry: function (offset) { ... }     // the network dropped: resuming
 *     });
 *     upload.promise.then(function (answer) { ... answer.status, answer.body ... });
 *   </script>
 *
 * It speaks the IETF draft "Resumable Uploads for HTTP" (interop version 6,
 * the default: the upload is created at options.action, whose answer is the
 * application's) or tus 1.0 (protocol "tus": created at options.endpoint,
 * the answer read from Response-Message-Location) to a wsgiprogress server
 * with resumable_dir set.  It sends with fetch (browsers, Node 18+): the
 * progress comes from the server's probe, under one progress ID across every
 * connection.  Reference: docs/js-client.md.
 */
(function (root) {
  "use strict";

  var client = typeof module !== "undefined" && module.exports
    ? require("./progress.js") : root.WSGIProgress;

  function resolve(url, base) {
    return typeof root.URL === "function" ? new root.URL(url, base).href : url;
  }

  function merged(a, b) {
    var out = {}, key;
    for (key in a) { if (Object.prototype.hasOwnProperty.call(a, key)) { out[key] = a[key]; } }
    for (key in b) { if (Object.prototype.hasOwnProperty.call(b, key)) { out[key] = b[key]; } }
    return out;
  }

  /* tus's Upload-Metadata: key base64(value), comma-separated. */
  function tusMetadata(metadata) {
    var pairs = [];
    for (var key in metadata) {
      if (Object.prototype.hasOwnProperty.call(metadata, key)) {
        pairs.push(key + " " + root.btoa(unescape(encodeURIComponent(String(metadata[key])))));
      }
    }
    return pairs.join(",");
  }

  /*
   * Upload `blob` resumably.  Options: protocol ("ietf" or "tus"), action
   * (IETF: the URL the application answers, default "/upload"), endpoint
   * (tus: the creation URL, default "/files/"), chunkSize (bytes a request
   * carries, default 8 MiB: what a drop can cost), retryDelays (ms before
   * each retry in a row, default [0, 1000, 3000, 5000, 10000]), headers,
   * metadata (tus), id, onRetry(offset), fetch, and the options of track
   * (track: false leaves progress alone).  Returns {id, promise, stop}: the
   * promise resolves with the application's answer {status, body} or
   * rejects with an Error once the retries are spent.
   */
  function resumable(blob, options) {
    options = options || {};
    var id = options.id || client.makeId();
    var tus = options.protocol === "tus";
    var chunk = options.chunkSize || 8 * 1024 * 1024;
    var delays = options.retryDelays || [0, 1000, 3000, 5000, 10000];
    var fetcher = options.fetch || root.fetch;
    var base = root.location && root.location.href ? root.location.href : "http://localhost/";
    var create = resolve(client.withId(tus ? options.endpoint || "/files/"
      : options.action || "/upload", id, options.idName), base);
    var location = null, retries = 0, stopped = false;
    var tracker = options.track === false ? null : client.track(id, options);

    function request(method, url, fields, body) {
      if (stopped) { return Promise.reject(new Error("stopped")); }
      var sent = merged(options.headers || {}, tus ? { "Tus-Resumable": "1.0.0" }
        : { "Upload-Draft-Interop-Version": "6" });
      return fetcher(url, { method: method, headers: merged(sent, fields), body: body });
    }

    function offsetOf(response) {
      var value = response.headers.get("Upload-Offset");
      if (value === null || !/^\d+$/.test(value)) { throw new Error("no Upload-Offset"); }
      return parseInt(value, 10);
    }

    function start() {
      var fields = { "Upload-Length": String(blob.size) };
      if (tus && options.metadata) { fields["Upload-Metadata"] = tusMetadata(options.metadata); }
      if (!tus) { fields["Upload-Complete"] = "?0"; }
      return request("POST", create, fields).then(function (response) {
        if (response.status !== 201) { throw new Error("creation answered " + response.status); }
        location = resolve(response.headers.get("Location"), create);
        return send(0);
      });
    }

    function send(from) {
      var end = Math.min(from + chunk, blob.size), last = end === blob.size;
      var fields = { "Upload-Offset": String(from), "Content-Type": tus
        ? "application/offset+octet-stream" : "application/partial-upload" };
      if (!tus) { fields["Upload-Complete"] = last ? "?1" : "?0"; }
      return request("PATCH", location, fields, blob.slice(from, end)).then(function (response) {
        if (response.status === 409 || response.status === 423 || response.status >= 500) {
          // another transfer still holds it, or the offsets differ: retry from its offset
          throw new Error("the server answered " + response.status);
        }
        var offset = offsetOf(response);
        retries = 0;
        if (offset < blob.size) { return send(offset); }
        if (!tus) { return answer(response); }
        var kept = response.headers.get("Response-Message-Location");
        return request("GET", resolve(kept, location)).then(answer);
      });
    }

    /* Go on from the offset the server has, after a drop. */
    function fromServer() {
      return request("HEAD", location).then(function (response) {
        if (response.status === 404) { throw new Error("the upload is gone"); }
        var offset = offsetOf(response);
        if (options.onRetry) { options.onRetry(offset); }
        return send(offset);
      });
    }

    function answer(response) {
      return response.text().then(function (body) {
        if (tracker) { setTimeout(tracker.stop, 2000); }  // let the probe say done
        return { status: response.status, body: body, location: location };
      });
    }

    function attempt(step) {
      return step().catch(function (error) {
        if (stopped || retries >= delays.length) { throw error; }
        var delay = delays[retries];
        retries += 1;
        return new Promise(function (wake) { setTimeout(wake, delay); }).then(function () {
          return attempt(location === null ? start : fromServer);
        });
      });
    }

    var promise = attempt(start);
    promise.catch(function () { if (tracker) { tracker.stop(); } });
    return {
      id: id, promise: promise,
      stop: function () { stopped = true; if (tracker) { tracker.stop(); } }
    };
  }

  client.resumable = resumable;
  if (typeof module !== "undefined" && module.exports) { module.exports = client; }
})(typeof window !== "undefined" ? window : globalThis);
