// Live updates: the engine's change feed (server-sent events) becomes DOM events on
// <body> (overt-vm, overt-vm-ID, overt-job-ID, overt-vmjob-VMID, overt-stats-ID, ...).
// Page parts declare which events refresh them with htmx's hx-trigger="EVENT from:body";
// graphs (charts.js) listen to overt-stats-ID for the host or VM they show.
(function () {
  "use strict";

  function fire(name, detail) {
    document.body.dispatchEvent(new CustomEvent(name, { detail: detail }));
  }

  function indicate(text, state) {
    var status = document.getElementById("live-status");
    if (status) {
      status.textContent = text;
      status.className = "live " + state;
    }
  }

  var handlers = {
    vm: function (d) {
      fire("overt-vm", d);
      fire("overt-vm-" + d.id, d);
      if (d.status === "removed" && document.body.dataset.vmId === d.id) {
        window.location.assign("/vms");
      }
    },
    host: function (d) {
      fire("overt-host", d);
      fire("overt-host-" + d.id, d);
    },
    job: function (d) {
      fire("overt-job", d);
      fire("overt-job-" + d.id, d);
      if (d.vm_id) { fire("overt-vmjob-" + d.vm_id, d); }
      if (d.host_id) { fire("overt-hostjob-" + d.host_id, d); }
    },
    stats: function (d) { fire("overt-stats-" + d.id, d); },
    audit: function (d) {
      fire("overt-audit", d);
      if (d.vm_id) { fire("overt-vmaudit-" + d.vm_id, d); }
      if (d.host_id) { fire("overt-hostaudit-" + d.host_id, d); }
    }
  };

  // The hosts and VMs whose graphs this page shows.
  function graphed() {
    return Array.prototype.map.call(document.querySelectorAll("[data-graph-subject]"),
      function (el) { return el.dataset.graphSubject; });
  }

  // The feed reports changes from the moment it connects; whatever changed between the
  // page's rendering and that moment (or while reconnecting) is fetched now.
  function resync() {
    var page = document.body.dataset;
    graphed().forEach(function (id) { fire("overt-stats-" + id, { id: id }); });
    ["overt-vm", "overt-host", "overt-job", "overt-audit"].forEach(function (name) {
      fire(name, {});
    });
    if (page.vmId) {
      ["overt-vm-", "overt-vmjob-", "overt-vmaudit-"].forEach(function (prefix) {
        fire(prefix + page.vmId, { id: page.vmId });
      });
    }
    if (page.hostId) {
      ["overt-host-", "overt-hostjob-", "overt-hostaudit-"].forEach(function (prefix) {
        fire(prefix + page.hostId, { id: page.hostId });
      });
    }
  }

  function connect() {
    if (!document.body.dataset.live || !window.EventSource) {
      return;
    }
    // New stats samples come only for the hosts and VMs whose graphs this page shows.
    var graphs = graphed();
    var source = new EventSource("/events/stream" +
      (graphs.length ? "?graphs=" + encodeURIComponent(graphs.join(",")) : ""));
    source.onopen = function () {
      indicate("Live", "on");
      resync();
    };
    source.onerror = function () { indicate("Reconnecting…", "off"); };
    Object.keys(handlers).forEach(function (kind) {
      source.addEventListener(kind, function (event) {
        handlers[kind](JSON.parse(event.data));
      });
    });
    source.addEventListener("signedout", function () {
      source.close();
      window.location.assign("/signin");
    });
    window.addEventListener("pagehide", function () { source.close(); });
    // Leaving the page (signing out, a link, a form): page parts stop refreshing, so a
    // late refresh cannot redirect the browser somewhere else meanwhile.
    function leave() {
      leaving = true;
      source.close();
    }
    window.addEventListener("beforeunload", leave);
    document.addEventListener("submit", function (event) {
      if (!event.target.hasAttribute("hx-post")) { leave(); }
    });
    document.body.addEventListener("htmx:beforeRequest", function (event) {
      if (leaving) { event.preventDefault(); }
    });
  }

  var leaving = false;

  document.addEventListener("DOMContentLoaded", connect);
})();
