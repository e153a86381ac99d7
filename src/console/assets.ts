// The console's page: plain HTML, CSS and JavaScript served from memory. No framework, no build
// step, nothing fetched from the internet: it works on an air-gapped cluster and costs nothing to
// serve. Live data arrives over one Server-Sent Events stream per browser tab.

export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>order-fleet console</title>
<link rel="stylesheet" href="/app.css">
</head>
<body>
<header>
  <h1>order-fleet</h1>
  <nav>
    <a href="#fleet" data-view="fleet">Fleet</a>
    <a href="#customer" data-view="customer">Customer</a>
    <a href="#summaries" data-view="summaries">Summaries</a>
    <a href="#dead-letters" data-view="dead-letters">Dead letters</a>
  </nav>
  <span id="conn" class="conn">connecting…</span>
</header>
<main>
  <section id="view-fleet" class="view">
    <div class="cards">
      <div class="card"><div class="k">members</div><div class="v" id="m-members">–</div></div>
      <div class="card"><div class="k">partitions owned</div><div class="v" id="m-owned">–</div></div>
      <div class="card"><div class="k">applied / s</div><div class="v" id="m-rate">–</div></div>
      <div class="card"><div class="k">stream head</div><div class="v" id="m-head">–</div></div>
      <div class="card"><div class="k">dead letters</div><div class="v" id="m-dlq">–</div></div>
    </div>
    <h2>Members</h2>
    <table id="members"><thead><tr><th>worker</th><th>since</th><th>partitions</th><th>ready</th><th>applied/s</th><th>resident</th><th>replayed</th></tr></thead><tbody></tbody></table>
    <h2>Partitions</h2>
    <div id="partitions" class="grid"></div>
    <p class="note" id="lag-note"></p>
    <h2>Handoffs and takeovers</h2>
    <table id="events"><thead><tr><th>time</th><th>partition</th><th>kind</th><th>from</th><th>to</th><th>at watermark</th></tr></thead><tbody></tbody></table>
  </section>
  <section id="view-customer" class="view" hidden>
    <form id="lookup"><input id="customer-id" placeholder="customer id" autocomplete="off" required><button>Look up</button></form>
    <div id="customer-result"></div>
  </section>
  <section id="view-summaries" class="view" hidden>
    <div class="cards">
      <div class="card"><div class="k">windows open</div><div class="v" id="s-open">–</div></div>
      <div class="card"><div class="k">summaries published</div><div class="v" id="s-published">–</div></div>
      <div class="card"><div class="k">waiting for delivery</div><div class="v" id="s-waiting">–</div></div>
      <div class="card"><div class="k">webhook failures (dead-lettered)</div><div class="v" id="s-failed">–</div></div>
    </div>
    <p class="note">Windows open and summaries published are the workers' own counters (since each worker started); waiting for delivery is the notifier consumer's pending count, polled rarely.</p>
  </section>
  <section id="view-dead-letters" class="view" hidden>
    <table id="dlq"><thead><tr><th>reason</th><th>count</th><th></th></tr></thead><tbody></tbody></table>
    <p class="note" id="actions-note"></p>
  </section>
</main>
<script src="/app.js"></script>
</body>
</html>
`;

export const APP_CSS = `
:root { --bg:#0f1419; --fg:#e6e6e6; --mut:#8b949e; --line:#2d333b; --card:#161b22; --ok:#3fb950; --warn:#d29922; --bad:#f85149; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--fg); }
header { display:flex; align-items:center; gap:24px; padding:10px 20px; border-bottom:1px solid var(--line); }
h1 { font-size:18px; margin:0; }
h2 { font-size:15px; margin:22px 0 8px; color:var(--mut); font-weight:600; }
nav a { color:var(--mut); text-decoration:none; margin-right:14px; }
nav a.active { color:var(--fg); border-bottom:2px solid var(--ok); }
.conn { margin-left:auto; color:var(--mut); font-size:12px; }
.conn.live { color:var(--ok); }
main { padding:16px 20px; }
.cards { display:flex; gap:12px; flex-wrap:wrap; }
.card { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:10px 14px; min-width:140px; }
.card .k { color:var(--mut); font-size:12px; }
.card .v { font-size:22px; font-variant-numeric:tabular-nums; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { text-align:left; padding:4px 8px; border-bottom:1px solid var(--line); }
th { color:var(--mut); font-weight:500; }
.grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(150px, 1fr)); gap:8px; }
.part { border:1px solid var(--line); border-left:6px solid var(--c, #444); border-radius:5px; padding:6px 8px; background:var(--card); font-size:12px; }
.part .p { font-weight:600; font-size:13px; }
.part.unowned { border-left-color:var(--bad); opacity:.8; }
.part.moving { border-left-color:var(--warn); }
.part .o { color:var(--mut); overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.note { color:var(--mut); font-size:12px; }
form { display:flex; gap:8px; margin-bottom:14px; }
input { background:var(--card); color:var(--fg); border:1px solid var(--line); padding:6px 8px; border-radius:4px; min-width:260px; }
button { background:#238636; color:#fff; border:0; padding:6px 12px; border-radius:4px; cursor:pointer; }
.items { font-family:ui-monospace, monospace; }
.rejected td { color:var(--bad); }
.timer td { color:var(--mut); }
.summary { color:var(--ok); }
`;

export const APP_JS = `'use strict';
const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k === 'style') e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};
const colorOf = (id) => {
  let h = 0;
  for (const ch of id) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return 'hsl(' + (h % 360) + ' 60% 55%)';
};
const fmt = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
let config = { allowActions: false };
let last = null;

function show(view) {
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== 'view-' + view;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === view);
}
window.addEventListener('hashchange', () => show(location.hash.slice(1) || 'fleet'));
show(location.hash.slice(1) || 'fleet');

function render(s) {
  last = s;
  const rate = s.workers.reduce((n, w) => n + w.ratePerSec, 0);
  $('#m-members').textContent = s.members.length;
  $('#m-owned').textContent = s.table.filter((t) => t.owner !== null).length + ' / ' + s.partitions;
  $('#m-rate').textContent = fmt(rate);
  $('#m-head').textContent = fmt(s.stream.lastSeq);
  $('#m-dlq').textContent = fmt(s.deadLetters.total);
  const reports = new Map(s.workers.map((w) => [w.id, w]));
  const mb = $('#members tbody');
  mb.replaceChildren(...s.members.map((m) => {
    const w = reports.get(m.id);
    return el('tr', { 'data-testid': 'member', 'data-id': m.id },
      el('td', {}, el('span', { style: 'color:' + colorOf(m.id) }, '■ '), m.id), el('td', {}, m.since),
      el('td', {}, m.partitions.length + ' [' + m.partitions.join(',') + ']'),
      el('td', {}, w ? (w.ready ? 'yes' : 'no') : '?'), el('td', {}, w ? fmt(w.ratePerSec) : '–'),
      el('td', {}, w ? fmt(w.resident) : '–'), el('td', {}, w ? fmt(w.replayed) : '–'));
  }));
  $('#partitions').replaceChildren(...s.table.map((t) => el('div', {
      class: 'part ' + t.state, style: t.owner ? '--c:' + colorOf(t.owner) : '',
      'data-testid': 'partition', 'data-partition': t.partition, 'data-owner': t.owner ?? '', 'data-state': t.state },
    el('div', { class: 'p' }, 'P' + t.partition + ' · ' + t.state),
    el('div', { class: 'o' }, t.owner ?? 'no owner'),
    el('div', {}, 'wm ' + fmt(t.watermark) + ' · epoch ' + t.epoch),
    el('div', {}, 'lag ' + fmt(t.lag) + ' · ' + fmt(t.throughput) + '/s'))));
  $('#lag-note').textContent = 'Lag from consumer info, polled every ' + Math.round(s.polls.consumerPollMs / 1000) + ' s (last ' + (s.polls.consumerInfoAt ?? 'not yet') + '); everything else is live.';
  $('#events tbody').replaceChildren(...s.events.slice(0, 30).map((e) => el('tr', { 'data-testid': 'event', 'data-partition': e.partition, 'data-kind': e.kind },
    el('td', {}, e.at), el('td', {}, 'P' + e.partition), el('td', {}, e.kind), el('td', {}, e.from || '–'), el('td', {}, e.to), el('td', {}, fmt(e.watermark)))));
  $('#s-open').textContent = fmt(s.summaries.windowsOpen);
  $('#s-published').textContent = fmt(s.summaries.published);
  $('#s-waiting').textContent = fmt(s.summaries.waitingForDelivery);
  $('#s-failed').textContent = fmt(s.deadLetters.notificationFailures);
  const reasons = Object.entries(s.deadLetters.byReason).sort((a, b) => b[1] - a[1]);
  $('#dlq tbody').replaceChildren(...reasons.map(([reason, count]) => el('tr', { 'data-testid': 'dlq-reason', 'data-reason': reason, 'data-count': count },
    el('td', {}, reason), el('td', {}, fmt(count)), el('td', {}, config.allowActions ? redriveButton(reason) : ''))));
}

function redriveButton(reason) {
  const b = el('button', { type: 'button' }, 'redrive');
  b.addEventListener('click', async () => {
    const token = prompt('Admin token to redrive every ' + reason + ' dead letter');
    if (!token) return;
    const r = await fetch('/api/dlq/redrive', { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer ' + token }, body: JSON.stringify({ reason }) });
    alert(r.ok ? JSON.stringify(await r.json()) : 'refused: ' + r.status + ' ' + (await r.text()));
  });
  return b;
}

async function lookup(id) {
  const out = $('#customer-result');
  out.replaceChildren(el('p', { class: 'note' }, 'loading…'));
  const r = await fetch('/api/customer/' + encodeURIComponent(id));
  if (!r.ok) { out.replaceChildren(el('p', { class: 'note' }, 'error: ' + (await r.text()))); return; }
  const c = await r.json();
  const h = c.history;
  const rows = h.steps.map((s) => el('tr', { class: s.kind, 'data-testid': 'history-row', 'data-seq': s.seq },
    el('td', {}, s.seq), el('td', {}, s.at),
    el('td', {}, s.kind === 'timer' ? 'timer ' + s.timer.reason + (s.timer.closed ? ' (closes)' : ' (void)') : s.kind === 'rejected' ? 'rejected: ' + s.rejected.reason : s.kind === 'superseded' ? 'superseded (redriven)' : s.type + (s.redriveOf ? ' (redriven)' : '')),
    el('td', { class: 'items' }, s.items.join(' ')),
    el('td', { class: 'items' }, '[' + s.contents.join(', ') + ']'),
    el('td', { class: s.summary ? 'summary' : '' }, s.summary ? (s.window + ' → summary +[' + s.summary.added.join(',') + '] -[' + s.summary.removed.join(',') + ']') : (s.window ?? '–'))));
  out.replaceChildren(
    el('div', { class: 'cards' },
      el('div', { class: 'card' }, el('div', { class: 'k' }, 'contents'), el('div', { class: 'v items', 'data-testid': 'customer-contents' }, '[' + c.current.items.join(', ') + ']')),
      el('div', { class: 'card' }, el('div', { class: 'k' }, 'owner'), el('div', { class: 'v', 'data-testid': 'customer-owner' }, c.current.stale ? 'none (read from KV)' : c.current.owner)),
      el('div', { class: 'card' }, el('div', { class: 'k' }, 'partition · lastSeq'), el('div', { class: 'v' }, c.current.partition + ' · ' + c.current.lastSeq)),
      el('div', { class: 'card' }, el('div', { class: 'k' }, 'fold of the log'), el('div', { class: 'v', 'data-testid': 'customer-fold' }, (h.contents.join(',') === c.current.items.join(',') && h.lastSeq === c.current.lastSeq) ? 'matches' : 'differs'))),
    el('h2', {}, 'History (' + h.steps.length + ' entries' + (h.truncated ? ', head removed by retention' : '') + ')'),
    el('table', { id: 'history' }, el('thead', {}, el('tr', {}, ...['seq', 'time', 'entry', 'items', 'contents after', 'window / summary'].map((t) => el('th', {}, t)))), el('tbody', {}, ...rows)));
}
$('#lookup').addEventListener('submit', (ev) => { ev.preventDefault(); void lookup($('#customer-id').value.trim()); });

async function connect() {
  config = await (await fetch('/api/config')).json();
  $('#actions-note').textContent = config.allowActions ? 'Actions enabled: redrive needs the admin token.' : 'Read-only console (start it with --allow-actions and an admin token to redrive from here).';
  const es = new EventSource('/events');
  es.addEventListener('snapshot', (ev) => { $('#conn').textContent = 'live'; $('#conn').className = 'conn live'; render(JSON.parse(ev.data)); });
  es.addEventListener('error', () => { $('#conn').textContent = 'reconnecting…'; $('#conn').className = 'conn'; });
}
void connect();
`;
