"""The dashboard's stylesheet and script, inlined into every page under the response's nonce.

The script only enhances what the server already does: headers are links that sort on the
server (`?sort=&dir=`) and the search box is a form (`?q=`); with the script, a click sorts the
rows in place and typing filters them as you type. It reads `data-` attributes the server
wrote and sets no HTML, only `hidden`, `aria-sort` and row order.
"""

from __future__ import annotations

STYLE = """
:root { color-scheme: light; --ink: #1d2330; --mute: #5b6475; --line: #dde2ea;
  --bg: #f6f8fb; --card: #fff; --accent: #2f6fde; --warn: #d9822b; --bad: #c8323c;
  --ok: #2e9d5b; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: var(--bg); }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.top { display: flex; align-items: center; justify-content: space-between; gap: 1rem;
  padding: .6rem 1.5rem; background: var(--ink); color: #fff; }
.top .brand { color: #fff; font-weight: 600; letter-spacing: .02em; }
.top .nav { color: #cdd5e3; margin-right: auto; }
.scroll { overflow-x: auto; }
table.report td { white-space: nowrap; }
.account { display: flex; gap: .75rem; align-items: center; }
.account form { margin: 0; }
main { padding: 1.25rem 1.5rem 3rem; max-width: 1200px; }
h1 { font-size: 1.35rem; margin: 0 0 1rem; }
h2 { font-size: 1.05rem; margin: 1.75rem 0 .6rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 1rem 1.25rem; margin-bottom: 1rem; }
table { border-collapse: collapse; width: 100%; background: var(--card); }
th, td { padding: .45rem .6rem; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: middle; }
th { font-weight: 600; color: var(--mute); font-size: .8rem; text-transform: uppercase;
  letter-spacing: .03em; white-space: nowrap; }
th[aria-sort="ascending"] a::after { content: " ▲"; }
th[aria-sort="descending"] a::after { content: " ▼"; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .85rem; }
tr.group td { background: var(--bg); font-weight: 600; color: var(--mute); }
tr.past td { color: var(--mute); }
td.depth-1 { padding-left: 1.6rem; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: 999px; font-size: .75rem;
  font-weight: 600; background: var(--line); color: var(--ink); }
.badge.active, .badge.admin { background: #d8f0e1; color: #1d6b3d; }
.badge.suspended, .badge.read { background: #fbe8d3; color: #8a4b0f; }
.badge.closed { background: #f5d5d8; color: #8e1f27; }
.badge.shadow { background: #e2e8f5; color: #2c4a86; }
.bar { display: block; width: 160px; height: 10px; }
.bar .track { fill: var(--line); }
.bar .spent { fill: var(--accent); }
.bar .reserved { fill: #9dbcf2; }
.bar.over .spent { fill: var(--bad); }
.bar.high .spent { fill: var(--warn); }
.spend { display: flex; flex-direction: column; gap: .2rem; }
.spend small, .hint { color: var(--mute); font-size: .8rem; }
.chart { display: block; width: 100%; max-width: 760px; height: auto; }
.chart .col { fill: var(--accent); }
.chart .col.partial { fill: #9dbcf2; }
.chart .col.ledger { fill: #1f4fa8; }
.chart .axis { stroke: var(--line); }
.chart text { fill: var(--mute); font-size: 10px; }
.search { display: flex; gap: .5rem; margin-bottom: .75rem; }
.search input { flex: 1; max-width: 360px; padding: .4rem .6rem; border: 1px solid var(--line);
  border-radius: 6px; font: inherit; }
button { font: inherit; padding: .35rem .8rem; border-radius: 6px; border: 1px solid var(--line);
  background: var(--card); color: var(--ink); cursor: pointer; }
.top button { background: transparent; color: #fff; border-color: #4a5468; }
.pager { display: flex; gap: 1rem; margin-top: .75rem; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr));
  gap: .5rem 1.5rem; margin: 0; }
.facts dt { color: var(--mute); font-size: .8rem; }
.facts dd { margin: 0; font-weight: 600; }
.error { color: var(--bad); font-weight: 600; }
.login { max-width: 380px; margin: 4rem auto; }
.login label { display: block; margin-bottom: .4rem; font-weight: 600; }
.login input { width: 100%; padding: .5rem .6rem; border: 1px solid var(--line);
  border-radius: 6px; font: inherit; margin-bottom: .8rem; }
.kv { margin: 0; padding: 0; list-style: none; }
.kv li { display: inline; margin-right: .6rem; }
.kv b { color: var(--mute); font-weight: 500; }
"""

SCRIPT = """
(function () {
  "use strict";
  function value(row, key) {
    for (var i = 0; i < row.cells.length; i += 1) {
      if (row.cells[i].getAttribute("data-key") === key) {
        return row.cells[i].getAttribute("data-sort") || "";
      }
    }
    return "";
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var body = table.tBodies[0];
    table.querySelectorAll("th[data-key] a").forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        var url = new URL(link.href);
        var key = url.searchParams.get("sort"), dir = url.searchParams.get("dir");
        var numeric = link.parentNode.getAttribute("data-type") === "num";
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = value(a, key), y = value(b, key), order;
          order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
          if (order === 0) { order = value(a, "id").localeCompare(value(b, "id")); }
          return dir === "desc" ? -order : order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
        table.querySelectorAll("th[data-key]").forEach(function (th) {
          th.removeAttribute("aria-sort");
        });
        link.parentNode.setAttribute("aria-sort", dir === "desc" ? "descending" : "ascending");
        history.replaceState(null, "", url.pathname + url.search);
        url.searchParams.set("dir", dir === "desc" ? "asc" : "desc");
        link.href = url.pathname + url.search;
      });
    });
  });
  var box = document.querySelector("input[data-filter]");
  if (box) {
    var table = document.getElementById(box.getAttribute("data-filter"));
    var shown = document.querySelector("[data-shown]");
    box.addEventListener("input", function () {
      var needle = box.value.trim().toLowerCase(), count = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var hit = (row.getAttribute("data-search") || "").indexOf(needle) !== -1;
        row.hidden = !hit;
        if (hit) { count += 1; }
      });
      if (shown) { shown.textContent = String(count); }
    });
  }
})();
"""
