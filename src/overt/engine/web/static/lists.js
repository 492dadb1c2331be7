// Paged lists (VMs, hosts): when the change feed says an object changed, only its row is
// fetched again, if the page shows it; rows whose content did not change keep their DOM
// nodes (focus, selection). A resync (empty detail) refreshes every row shown. An object
// added or removed fetches the page's table again (search, sort and page are in the URL).
(function () {
  "use strict";

  var DELAY_MS = 150;

  function start(list) {
    var kind = list.dataset.liveRows;
    var wanted = new Set();
    var timer = null;
    var busy = false;

    function shown(id) {
      return list.querySelector("tbody tr[data-id='" + CSS.escape(id) + "']");
    }

    function allShown() {
      return Array.prototype.map.call(list.querySelectorAll("tbody tr[data-id]"),
        function (row) { return row.dataset.id; });
    }

    function want(ids) {
      if (leaving) { return; }
      ids.forEach(function (id) { if (id && shown(id)) { wanted.add(id); } });
      if (wanted.size && !timer && !busy) { timer = setTimeout(refresh, DELAY_MS); }
    }

    function swap(html, asked) {
      var template = document.createElement("template");
      template.innerHTML = "<table><tbody>" + html + "</tbody></table>";
      var found = new Set();
      template.content.querySelectorAll("tr[data-id]").forEach(function (fresh) {
        found.add(fresh.dataset.id);
        var old = shown(fresh.dataset.id);
        if (old && !old.isEqualNode(fresh)) { old.replaceWith(fresh); }
      });
      asked.forEach(function (id) {  // removed since: no row came back
        var old = shown(id);
        if (!found.has(id) && old) { old.remove(); }
      });
      list.dataset.refreshes = String(Number(list.dataset.refreshes || 0) + 1);
    }

    function refresh() {
      timer = null;
      var asked = Array.from(wanted);
      wanted.clear();
      if (!asked.length) { return; }
      busy = true;
      fetch(list.dataset.rowsUrl + "?ids=" + encodeURIComponent(asked.join(",")), {
        headers: { "HX-Request": "true" },
        credentials: "same-origin"
      }).then(function (reply) {
        // Not signed in any more: the event stream says so and app.js goes to sign in.
        return reply.ok ? reply.text() : null;
      }).then(function (html) {
        if (html !== null && !leaving) { swap(html, asked); }
      }).catch(function () {
        asked.forEach(function (id) { wanted.add(id); });  // try again with the next change
      }).finally(function () {
        busy = false;
        if (wanted.size) { timer = setTimeout(refresh, DELAY_MS); }
      });
    }

    // An object added or removed may change which rows the page holds: the page's
    // table (its search, order and page, from the URL) is fetched again, once for many.
    var tableTimer = null;

    function refreshTable() {
      tableTimer = null;
      if (leaving) { return; }
      fetch(list.dataset.tableUrl + window.location.search, {
        headers: { "HX-Request": "true" }, credentials: "same-origin"
      }).then(function (reply) {
        return reply.ok ? reply.text() : null;
      }).then(function (html) {
        if (html !== null && !leaving) {
          list.innerHTML = html;
          list.dataset.refreshes = String(Number(list.dataset.refreshes || 0) + 1);
        }
      }).catch(function () { /* the next change tries again */ });
    }

    function on(name, ids, membership) {
      document.body.addEventListener(name, function (event) {
        var detail = event.detail || {};
        if (membership && (detail.new || detail.status === "removed")) {
          if (!tableTimer) { tableTimer = setTimeout(refreshTable, DELAY_MS * 2); }
          return;
        }
        want(detail.id === undefined ? allShown() : ids(detail));
      });
    }

    if (kind === "vm") {
      on("overt-vm", function (d) { return [d.id]; }, true);
    } else {
      on("overt-host", function (d) { return [d.id]; }, true);
      // A VM starting, stopping or moving changes the VM counts of its hosts.
      on("overt-vm", function (d) { return [d.host_id, d.old_host_id]; });
    }
  }

  // Leaving the page (signing out, a link, a form): no more rows are fetched.
  var leaving = false;
  window.addEventListener("beforeunload", function () { leaving = true; });
  document.addEventListener("submit", function () { leaving = true; });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-rows]").forEach(start);
  });
})();
