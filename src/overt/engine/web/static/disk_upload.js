// The Upload page: a new disk and an upload transfer (POST /disks/uploads), then the
// file in chunks (PUT with Content-Range) that the portal writes through the engine's
// imageio daemon; the bar shows the bytes acknowledged. Then finalize, or cancel.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) { return; }
  var CHUNK = parseInt(form.dataset.chunk, 10);
  var csrf = document.body.dataset.csrf;
  var bar = document.getElementById("upload-progress");
  var text = document.getElementById("upload-progress-text");
  var errorBox = document.getElementById("upload-error");
  var start = document.getElementById("upload-start");
  var cancelButton = document.getElementById("upload-cancel");
  var done = document.getElementById("upload-done");
  var transfer = null, cancelled = false, controller = null;

  function say(message) { text.textContent = message; }
  function showError(message) { errorBox.textContent = message; errorBox.hidden = false; }
  function mib(bytes) { return (bytes / 1048576).toFixed(1) + " MiB"; }
  function progress(done, total) {
    var percent = total ? Math.floor(done * 100 / total) : 100;
    bar.value = percent;
    say(percent + " % (" + mib(done) + " of " + mib(total) + ")");
  }
  async function answer(response) {
    var body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      throw new Error(body && body.error ? body.error : response.status + " " + response.statusText);
    }
    return body;
  }
  function post(url, data) {
    return fetch(url, {method: "POST", credentials: "same-origin", body: data,
                       headers: {"X-CSRF-Token": csrf, "Accept": "application/json"}}).then(answer);
  }
  async function isQcow2(file) {
    var head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
    return head.length === 4 && head[0] === 0x51 && head[1] === 0x46 && head[2] === 0x49 && head[3] === 0xfb;
  }
  async function cancelTransfer() {
    if (!transfer) { return null; }
    var id = transfer;
    transfer = null;
    return post("/disks/transfers/" + id + "/cancel", new URLSearchParams());
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    errorBox.hidden = true;
    done.hidden = true;
    var file = form.elements.file.files[0];
    if (!file) { showError("Choose an image file."); return; }
    if (await isQcow2(file)) {
      showError(file.name + " is a qcow2 image: the portal uploads raw images only. " +
                "Convert it first: qemu-img convert -O raw " + file.name + " IMAGE.raw");
      return;
    }
    start.disabled = true;
    cancelled = false;
    var params = new URLSearchParams();
    params.set("name", form.elements.name.value.trim() || file.name.replace(/\.[^.]*$/, ""));
    params.set("format", form.elements.format.value);
    params.set("domain", form.elements.domain.value);
    params.set("size", String(file.size));
    try {
      say("Creating the disk…");
      var started = await post("/disks/uploads", params);
      transfer = started.transfer;
      cancelButton.hidden = false;
      progress(0, file.size);
      for (var first = 0; first < file.size; first += CHUNK) {
        var end = Math.min(first + CHUNK, file.size);
        controller = new AbortController();
        var written = await fetch("/disks/transfers/" + transfer + "/data", {
          method: "PUT", credentials: "same-origin", signal: controller.signal,
          body: file.slice(first, end),
          headers: {"X-CSRF-Token": csrf, "Accept": "application/json",
                    "Content-Type": "application/octet-stream",
                    "Content-Range": "bytes " + first + "-" + (end - 1) + "/" + file.size}
        }).then(answer);
        progress(written.acknowledged, file.size);
      }
      cancelButton.hidden = true;
      say("100 % (" + mib(file.size) + " of " + mib(file.size) + "), finalizing…");
      var id = transfer;
      transfer = null;
      var finished = await post("/disks/transfers/" + id + "/finalize", new URLSearchParams());
      say("100 % (" + mib(file.size) + " of " + mib(file.size) + "), done: disk " +
          params.get("name") + " is ready");
      done.href = "/disks?job=" + finished.job;
      done.hidden = false;
      done.focus();
    } catch (e) {
      if (cancelled) { return; }
      showError("The upload failed: " + e.message);
      cancelButton.hidden = true;
      try {
        if (await cancelTransfer()) { showError("The upload failed: " + e.message + " (its disk is removed)"); }
      } catch (ignored) { /* already ended */ }
      start.disabled = false;
    }
  });

  cancelButton.addEventListener("click", async function () {
    cancelled = true;
    cancelButton.hidden = true;
    if (controller) { controller.abort(); }
    try {
      var ended = await cancelTransfer();
      window.location.assign(ended ? "/disks?job=" + ended.job : "/disks");
    } catch (e) {
      showError("Cancelling failed: " + e.message);
    }
  });
}());
