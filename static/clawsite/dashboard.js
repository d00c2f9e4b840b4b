// The staff dashboard: numbers and small SVG charts fed by /ws/stats/ (one frame a second).
(function () {
  "use strict";
  const root = document.getElementById("dashboard");
  if (!root) return;
  const SVG = "http://www.w3.org/2000/svg";
  const WINDOW_MS = 10 * 60 * 1000;
  const points = [];
  const liveState = document.getElementById("live-state");

  function lookup(stats, path) {
    return path.split(".").reduce(function (value, key) { return value == null ? value : value[key]; }, stats);
  }

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text != null) node.textContent = text;
    return node;
  }

  // A line chart of the last WINDOW_MS: one polyline per series, y from 0 to the largest value.
  function drawChart(svg, series) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const width = 600, height = 160, pad = 4;
    const now = Date.now();
    let max = 0;
    series.forEach(function (s) {
      points.forEach(function (p) { const v = s.value(p); if (v != null && v > max) max = v; });
    });
    max = max > 0 ? max * 1.1 : 1;
    svg.appendChild(el("line", { x1: 0, y1: height - pad, x2: width, y2: height - pad, class: "axis" }));
    svg.appendChild(el("text", { x: 4, y: 14, class: "chart-label" }, max.toPrecision(3)));
    series.forEach(function (s) {
      const coords = [];
      points.forEach(function (p) {
        const v = s.value(p);
        if (v == null) return;
        const x = width - ((now - p.t) / WINDOW_MS) * width;
        const y = height - pad - (v / max) * (height - 2 * pad);
        coords.push(x.toFixed(1) + "," + y.toFixed(1));
      });
      svg.appendChild(el("polyline", { points: coords.join(" "), class: "series " + s.className }));
    });
    const legend = series.map(function (s) { return s.name; }).join(" · ");
    svg.appendChild(el("text", { x: width - 4, y: 14, class: "chart-label", "text-anchor": "end" }, legend));
  }

  function row(cells) {
    const tr = document.createElement("tr");
    cells.forEach(function (text) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    });
    return tr;
  }

  function fillTable(id, rows, empty) {
    const body = document.getElementById(id).tBodies[0];
    body.replaceChildren();
    if (!rows.length) {
      const tr = row([empty]);
      tr.className = "empty";
      tr.firstChild.colSpan = 5;
      body.appendChild(tr);
      return;
    }
    rows.forEach(function (cells) { body.appendChild(row(cells)); });
  }

  function renderFlow(flow) {
    if (document.getElementById("limits-table")) {
      const dash = function (v) { return v == null ? "–" : String(v); };
      fillTable("limits-table", flow.limits.map(function (l) {
        return [l.key, l.running + " / " + dash(l.concurrency), dash(l.rate), dash(l.tokens), l.held ? "yes" : "no"];
      }), "No limit is configured.");
      fillTable("breakers-table", flow.breakers.map(function (b) {
        return [b.name, b.state, String(b.failures || 0), String(b.opened || 0), (b.waits || 0) + " (" + (b.wait_seconds || 0) + ")"];
      }), "No outbound call yet.");
      fillTable("schedules-table", flow.schedules.map(function (s) {
        return [s.name + " (" + s.tool + (s.enabled ? "" : ", disabled") + ")", s.every, dash(s.next_run_at), dash(s.last_run_at), s.runs_fired + " / " + s.runs_skipped];
      }), "No schedule.");
    }
  }

  // Limits, breakers and schedules change on their own: read them every few seconds.
  function pollFlow() {
    fetch("/dashboard/flow", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (flow) { if (flow) renderFlow(flow); })
      .catch(function () {})
      .finally(function () { setTimeout(pollFlow, FLOW_POLL_MS); });
  }
  const FLOW_POLL_MS = 2000;
  setTimeout(pollFlow, FLOW_POLL_MS);

  function render(stats) {
    document.querySelectorAll("[data-stat]").forEach(function (node) {
      const value = lookup(stats, node.dataset.stat);
      node.textContent = value == null ? "–" : String(value);
    });
    fillTable("queues-table", (stats.queues || []).map(function (q) {
      return [q.name, String(q.queued), String(q.running), q.paused ? "paused" : ""];
    }), "No queued or running task.");
    fillTable("sources-table", (stats.sources || []).map(function (s) {
      return [s.source, String(s.active), String(s.finished)];
    }), "No task yet.");
    fillTable("workers-table", stats.workers.map(function (w) {
      return [w.id, w.hostname || "", String(w.running), w.last_heartbeat, w.alive ? "yes" : "no"];
    }), "No worker is running.");
    const byTool = (stats.cache && stats.cache.by_tool) || {};
    fillTable("cache-table", Object.keys(byTool).sort().map(function (tool) {
      const c = byTool[tool];
      const total = c.hits + c.misses;
      return [tool, String(c.hits), String(c.misses), total ? Math.round(100 * c.hits / total) + "%" : "–", String(c.keys)];
    }), "No cache activity yet.");
    points.push({
      t: Date.now(),
      throughput: stats.throughput_per_s,
      p50: stats.latency_ms.p50,
      p95: stats.latency_ms.p95,
      queued: stats.queue.queued,
      running: stats.queue.running,
    });
    while (points.length && Date.now() - points[0].t > WINDOW_MS) points.shift();
    drawChart(document.getElementById("chart-throughput"), [
      { name: "tasks/s", className: "s1", value: function (p) { return p.throughput; } },
    ]);
    drawChart(document.getElementById("chart-latency"), [
      { name: "p50", className: "s1", value: function (p) { return p.p50; } },
      { name: "p95", className: "s2", value: function (p) { return p.p95; } },
    ]);
    drawChart(document.getElementById("chart-depth"), [
      { name: "queued", className: "s1", value: function (p) { return p.queued; } },
      { name: "running", className: "s2", value: function (p) { return p.running; } },
    ]);
    root.dataset.updates = String(Number(root.dataset.updates || 0) + 1);
  }

  // The last minutes as the rows tell them (queue depth is only known from now on).
  const history = document.getElementById("initial-history");
  if (history) {
    JSON.parse(history.textContent).forEach(function (h) {
      points.push({ t: Date.parse(h.t), throughput: h.throughput_per_s, p50: h.latency_ms.p50, p95: h.latency_ms.p95 });
    });
    points.pop();  // "now" is the initial stats' point, pushed by render() below
  }
  const initial = document.getElementById("initial-stats");
  if (initial) render(JSON.parse(initial.textContent));

  function connect(delay) {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws/stats/");
    socket.onopen = function () { delay = 500; liveState.textContent = "Live."; };
    socket.onmessage = function (event) {
      const message = JSON.parse(event.data);
      if (message.type === "stats") render(message);
    };
    socket.onclose = function () {
      liveState.textContent = "Reconnecting…";
      setTimeout(function () { connect(Math.min(delay * 2, 10000)); }, delay);
    };
  }
  connect(500);
})();
