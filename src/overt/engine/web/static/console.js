// The VM console: ask the engine for a ticket (a one-time VNC password and a one-time
// proxy token), then connect noVNC to the engine's websocket proxy.
const screen = document.getElementById("console-screen");
const status = document.getElementById("console-status");
const LOAD_WAIT_MS = 20000;
const LOAD_ATTEMPTS = 3;
let rfb = null;

function say(text, isError) {
  status.textContent = text;
  status.className = isError ? "error" : "";
}

// noVNC probes the browser's H.264 decoder while its modules load (a top-level await on
// VideoDecoder.flush()), and Chromium may leave that promise pending for ever: the
// import then never finishes and the console never opens. QEMU's VNC server sends no
// H.264, so the probe is answered "no" at once by hiding the decoder from this page.
// A module that failed to arrive (a dropped connection) is fetched again: browsers
// retry a failed dynamic import.
async function importViewer() {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await import("/static/vendor/novnc/core/rfb.js")).default;
    } catch (err) {
      if (attempt >= LOAD_ATTEMPTS) {
        throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

function loadViewer() {
  delete window.VideoDecoder;
  const late = new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error("the console viewer did not load")), LOAD_WAIT_MS);
  });
  return Promise.race([importViewer(), late]);
}

let viewer = null;

// A request the network dropped (not one the engine refused) is sent once more: a
// second ticket only replaces the first.
async function askForTicket() {
  const ask = () => fetch(screen.dataset.ticketUrl, {
    method: "POST", credentials: "same-origin",
    headers: { "X-CSRF-Token": document.body.dataset.csrf, "Accept": "application/json" },
  });
  try {
    return await ask();
  } catch (err) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    return ask();
  }
}

async function open() {
  if (rfb) {
    rfb.disconnect();
    rfb = null;
  }
  say("Loading the console viewer…", false);
  let RFB;
  try {
    viewer = viewer || loadViewer();
    RFB = await viewer;
  } catch (err) {
    viewer = null;
    say("The console viewer could not be loaded (" + err.message + "). Reconnect to try again.", true);
    return;
  }
  say("Asking the engine for a console ticket…", false);
  let reply;
  let body;
  try {
    reply = await askForTicket();
    body = await reply.json();
  } catch (err) {
    say("The engine did not answer: " + err + ". Reconnect to try again.", true);
    return;
  }
  if (!reply.ok) {
    say(body.error || "The console cannot be opened.", true);
    return;
  }
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  say("Connecting…", false);
  rfb = new RFB(screen, `${scheme}//${window.location.host}${body.url}`,
                { credentials: { password: body.password } });
  rfb.scaleViewport = true;
  rfb.focusOnClick = true;
  rfb.addEventListener("connect", () => say("Connected. Click the screen to type into the VM.", false));
  rfb.addEventListener("disconnect", (e) => say(e.detail.clean ? "Disconnected."
    : "The connection to the console was lost.", !e.detail.clean));
  rfb.addEventListener("securityfailure", (e) => say("The console refused the ticket: " +
    (e.detail.reason || "authentication failed") + ". Reconnect to get a new one.", true));
  rfb.addEventListener("credentialsrequired", () => rfb.sendCredentials({ password: body.password }));
}

document.getElementById("console-reconnect").addEventListener("click", open);
document.getElementById("console-cad").addEventListener("click", () => { if (rfb) { rfb.sendCtrlAltDel(); } });
open();
