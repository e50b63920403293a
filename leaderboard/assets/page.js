/* vlbench leaderboard: sortable tables and the dataset/task/family/model filter.
   Inlined into the page at build time (no network). */
(function () {
  "use strict";

  // Click a header to sort by it (descending first); numbers sort by data-sort, blanks last.
  function sortKey(row, i) {
    var cell = row.cells[i], v = cell.getAttribute("data-sort");
    if (v === null) { return cell.textContent.trim().toLowerCase(); }
    return v === "" ? null : parseFloat(v);
  }

  function sortTable(table, th, i) {
    var desc = th.getAttribute("aria-sort") !== "descending";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", desc ? "descending" : "ascending");
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = sortKey(a, i), y = sortKey(b, i);
      if (x === null || y === null) { return (x === null) - (y === null); }
      var r = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
      return desc ? -r : r;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, i) {
      th.addEventListener("click", function () { sortTable(table, th, i); });
    });
  });

  // Filter: a section shows when its task and dataset match; a row when its family matches
  // and its model name contains the typed text. A section with no row left is hidden too.
  var controls = {
    task: document.getElementById("filter-task"),
    dataset: document.getElementById("filter-dataset"),
    family: document.getElementById("filter-family"),
    model: document.getElementById("filter-model")
  };

  function applyFilter() {
    var want = {
      task: controls.task ? controls.task.value : "",
      dataset: controls.dataset ? controls.dataset.value : "",
      family: controls.family ? controls.family.value : "",
      model: controls.model ? controls.model.value.trim().toLowerCase() : ""
    };
    document.querySelectorAll("section.group").forEach(function (section) {
      var show = (!want.task || section.dataset.task === want.task) &&
                 (!want.dataset || section.dataset.dataset === want.dataset);
      var visible = 0;
      section.querySelectorAll("tbody tr").forEach(function (row) {
        var ok = (!want.family || row.dataset.family === want.family) &&
                 (!want.model || row.dataset.model.toLowerCase().indexOf(want.model) !== -1);
        row.classList.toggle("hidden", !ok);
        visible += ok ? 1 : 0;
      });
      section.classList.toggle("hidden", !show || visible === 0);
    });
    document.querySelectorAll("section.overview tbody tr").forEach(function (row) {
      row.classList.toggle("hidden", !((!want.family || row.dataset.family === want.family) &&
        (!want.model || row.dataset.model.toLowerCase().indexOf(want.model) !== -1)));
    });
  }

  Object.keys(controls).forEach(function (k) {
    if (controls[k]) {
      controls[k].addEventListener("change", applyFilter);
      controls[k].addEventListener("input", applyFilter);
    }
  });
})();
