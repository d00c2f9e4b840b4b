// Live updates: the task list and the task page follow /ws/tasks/ (session cookie auth).
(function () {
  "use strict";
  const detail = document.getElementById("task-detail");
  const table = document.getElementById("task-table");
  if (!detail && !table) return;
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const path = detail ? "/ws/tasks/" + detail.dataset.taskId + "/" : "/ws/tasks/";

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function updateRow(task) {
    const body = table.tBodies[0];
    let row = document.getElementById("task-" + task.id);
    if (row && Number(row.dataset.version) > task.version) return;
    const fresh = document.createElement("tr");
    fresh.id = "task-" + task.id;
    fresh.dataset.version = task.version;
    const link = document.createElement("a");
    link.href = "/tasks/" + task.id;
    link.textContent = task.id.slice(0, 12) + "…";
    const first = document.createElement("td");
    first.appendChild(link);
    fresh.append(first, cell(task.tool), cell(task.status, "status status-" + task.status),
      cell(task.created_at), cell(task.duration_ms == null ? "" : task.duration_ms.toFixed(1)));
    if (row) { row.replaceWith(fresh); return; }
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    body.insertBefore(fresh, body.firstChild);
  }

  function updateDetail(task) {
    const status = document.getElementById("task-status");
    status.textContent = task.status;
    status.className = "status status-" + task.status;
    document.getElementById("task-attempts").textContent = task.attempts + " of " + task.max_attempts;
    document.getElementById("task-json").textContent = JSON.stringify(task, null, 2);
  }

  function connect(delay) {
    const socket = new WebSocket(scheme + location.host + path);
    socket.onmessage = function (event) {
      const message = JSON.parse(event.data);
      const tasks = message.type === "task.updates" ? message.tasks : [message.task];
      tasks.forEach(detail ? updateDetail : updateRow);
    };
    socket.onclose = function () { setTimeout(function () { connect(Math.min(delay * 2, 10000)); }, delay); };
  }
  connect(500);
})();
