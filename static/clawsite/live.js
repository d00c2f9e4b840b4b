// Live updates for the task list and the task page, over /ws/tasks/ (session cookie auth).
// The pages are complete without this script; it only keeps them current without reloads.
(function () {
  "use strict";
  const panel = document.getElementById("task-panel");
  const table = document.getElementById("task-table");
  if (!panel && !table) return;
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const path = panel ? "/ws/tasks/" + panel.dataset.taskId + "/" : "/ws/tasks/";
  const liveState = document.getElementById("live-state");
  const PAGE_SIZE = table ? Number(table.dataset.pageSize || 50) : 50;

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function timeCell(iso) {
    const td = document.createElement("td");
    if (iso) {
      const time = document.createElement("time");
      time.dateTime = iso;
      time.textContent = iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "");
      td.appendChild(time);
    }
    return td;
  }

  // --- the list ----------------------------------------------------------------------------------

  function matchesFilters(task) {
    return (!table.dataset.status || table.dataset.status === task.status) &&
      (!table.dataset.tool || table.dataset.tool === task.tool) &&
      (!table.dataset.source || table.dataset.source === task.source) &&
      (!table.dataset.queue || table.dataset.queue === task.queue);
  }

  function updateRow(task) {
    const body = table.tBodies[0];
    const row = document.getElementById("task-" + task.id);
    if (row && Number(row.dataset.version) > task.version) return;
    if (!matchesFilters(task)) {
      // A row that no longer matches the status filter leaves the filtered list.
      if (row) row.remove();
      return;
    }
    // New tasks appear on the first page only: older pages are a stable history.
    if (!row && !table.dataset.firstPage) return;
    const fresh = document.createElement("tr");
    fresh.id = "task-" + task.id;
    fresh.dataset.version = task.version;
    const link = document.createElement("a");
    link.href = "/tasks/" + task.id;
    link.textContent = task.id.slice(0, 12) + "…";
    const first = document.createElement("td");
    first.appendChild(link);
    fresh.append(first, cell(task.tool), cell(task.queue, "queue"), cell(task.source, "source source-" + task.source),
      cell(task.status, "status status-" + task.status),
      timeCell(task.created_at), cell(task.duration_ms == null ? "" : task.duration_ms.toFixed(1)));
    if (row) { row.replaceWith(fresh); return; }
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    // Newest first: insert before the first row created earlier than this task.
    const rows = Array.from(body.rows);
    const before = rows.find(function (r) {
      const t = r.querySelector("time");
      return t && t.dateTime.replace("+00:00", "Z") < task.created_at;
    });
    body.insertBefore(fresh, before || null);
    // The first page keeps its size: under a flood of new tasks the oldest rows drop off.
    while (body.rows.length > PAGE_SIZE) body.deleteRow(-1);
  }

  // --- one task: the server renders the panel; we fetch it again when the task changes ---------

  let shownVersion = panel ? Number(panel.dataset.version) : 0;
  let wantedVersion = shownVersion;
  let fetching = false;

  function refreshPanel() {
    if (fetching || wantedVersion <= shownVersion) return;
    fetching = true;
    fetch(location.pathname, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) {
        const doc = new DOMParser().parseFromString(html, "text/html");
        const next = doc.getElementById("task-panel");
        if (!next) return;
        const version = Number(next.dataset.version);
        if (version >= shownVersion) {
          const before = document.getElementById("task-status").textContent;
          panel.innerHTML = next.innerHTML;
          panel.dataset.version = version;
          shownVersion = version;
          const after = document.getElementById("task-status").textContent;
          if (after !== before) document.getElementById("task-announce").textContent = "Status: " + after;
        }
      })
      .catch(function () { /* the next update or the reconnect tries again */ })
      .finally(function () {
        fetching = false;
        if (wantedVersion > shownVersion) setTimeout(refreshPanel, 100);
      });
  }

  function updateDetail(task) {
    if (task.id !== panel.dataset.taskId) return;
    // The status changes at once; the rest follows with the server-rendered panel.
    const status = document.getElementById("task-status");
    if (task.version > shownVersion && status) {
      status.textContent = task.status;
      status.className = "status status-" + task.status;
    }
    wantedVersion = Math.max(wantedVersion, task.version);
    refreshPanel();
  }

  // --- the socket ----------------------------------------------------------------------------------

  function connect(delay) {
    const socket = new WebSocket(scheme + location.host + path);
    socket.onopen = function () {
      delay = 500;
      if (liveState) liveState.textContent = "Live";
      document.body.dataset.live = "1";
    };
    socket.onmessage = function (event) {
      const message = JSON.parse(event.data);
      if (message.type === "task.deleted") return;  // the page shows it until it is reloaded
      const tasks = message.type === "task.updates" ? message.tasks : [message.task];
      tasks.forEach(panel ? updateDetail : updateRow);
    };
    socket.onclose = function () {
      document.body.dataset.live = "";
      if (liveState) liveState.textContent = "Reconnecting…";
      setTimeout(function () { connect(Math.min(delay * 2, 10000)); }, delay);
    };
  }
  connect(500);
})();
