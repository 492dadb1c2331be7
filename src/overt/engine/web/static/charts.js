// Graphs of a host's or VM's last hour (uPlot): CPU, memory and network. The data comes
// from the portal's /graphs/... endpoints, fetched again whenever the live feed (app.js)
// says the host or VM has new samples (overt-stats-ID), so the graphs move as they come.
(function () {
  "use strict";

  function bytesPerSecond(u, values) {
    return values.map(function (v) {
      if (v == null) { return ""; }
      var units = ["B/s", "KiB/s", "MiB/s", "GiB/s"];
      var i = 0;
      while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
      return v.toFixed(v < 10 && i > 0 ? 1 : 0) + " " + units[i];
    });
  }

  var GRAPHS = [
    { title: "CPU (%)", series: [{ key: "cpu", label: "CPU %", stroke: "#2563eb", fill: "rgba(37,99,235,0.12)" }],
      axis: function (u, values) { return values.map(function (v) { return v + "%"; }); } },
    { title: "Memory (MiB)", series: [{ key: "memory_used_mib", label: "Used MiB", stroke: "#16a34a", fill: "rgba(22,163,74,0.12)" },
                                      { key: "memory_total_mib", label: "Total MiB", stroke: "#64748b" }] },
    { title: "Network", series: [{ key: "rx", label: "Received", stroke: "#9333ea" },
                                 { key: "tx", label: "Sent", stroke: "#ea580c" }],
      axis: bytesPerSecond, network: true }
  ];

  function build(container) {
    var url = container.dataset.graph;
    var charts = [];
    GRAPHS.forEach(function (graph) {
      if (graph.network && !container.dataset.graphNetwork) { return; }
      var figure = document.createElement("figure");
      figure.className = "graph";
      var caption = document.createElement("figcaption");
      caption.textContent = graph.title;
      figure.appendChild(caption);
      container.appendChild(figure);
      charts.push({ graph: graph, figure: figure, plot: null });
    });
    var empty = document.createElement("p");
    empty.className = "muted";
    empty.textContent = "No samples yet: hosts report their stats every few seconds.";
    container.appendChild(empty);

    function width(figure) { return Math.max(figure.clientWidth - 8, 240); }

    function draw(data) {
      empty.hidden = data.time.length > 0;
      charts.forEach(function (chart) {
        var columns = [data.time].concat(chart.graph.series.map(function (s) { return data[s.key]; }));
        chart.figure.dataset.points = String(data.time.length);
        if (chart.plot) {
          chart.plot.setData(columns);
          return;
        }
        var opts = {
          width: width(chart.figure), height: 160,
          series: [{}].concat(chart.graph.series.map(function (s) {
            return { label: s.label, stroke: s.stroke, fill: s.fill, width: 2 };
          })),
          axes: [{}, { values: chart.graph.axis, size: 70 }],
          // Up to the last hour: from the first sample (at least the last minute), so a
          // VM started a minute ago shows its minute rather than a sliver.
          scales: { x: { time: true, range: function (u) {
            var now = Date.now() / 1000;
            var first = u.data[0].length ? u.data[0][0] : now;
            return [Math.max(now - 3600, Math.min(first, now - 60)), now];
          } } },
          legend: { show: true }
        };
        chart.plot = new window.uPlot(opts, columns, chart.figure);
      });
    }

    // One fetch at a time; news arriving meanwhile asks for one more afterwards.
    var fetching = false;
    var again = false;
    function refresh() {
      if (fetching) {
        again = true;
        return;
      }
      fetching = true;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (reply) { return reply.ok ? reply.json() : null; })
        .then(function (data) { if (data) { draw(data); } })
        .catch(function () { /* the next news tries again */ })
        .finally(function () {
          fetching = false;
          if (again) {
            again = false;
            refresh();
          }
        });
    }

    refresh();
    document.body.addEventListener("overt-stats-" + container.dataset.graphSubject, refresh);
    window.addEventListener("resize", function () {
      charts.forEach(function (chart) {
        if (chart.plot) { chart.plot.setSize({ width: width(chart.figure), height: 160 }); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.uPlot) { return; }
    document.querySelectorAll("[data-graph]").forEach(build);
  });
})();
