#include "admin/status_page.h"

namespace sluice {

// One static page: the browser does the work. It polls the relative URL `stats` (so it also
// works behind `kubectl port-forward` or a path prefix), keeps the last few samples to turn
// counters into rates, and writes every figure with textContent (names come from the config,
// never as markup). Each figure sits in an element with a data-metric name and its raw value
// in data-value, for scripts and tests; rows carry data-listener / data-cluster.
const std::string& status_page_html() {
  static const std::string page = R"HTML(<!doctype html>
<html lang="en"><head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark light">
<link rel="icon" href="data:,">
<title>sluice</title>
<style>
:root {
  --bg: #0e1116; --fg: #d6dde6; --dim: #7d8896; --line: #252c36; --panel: #141922;
  --ok: #4fd17a; --warn: #f0b429; --bad: #ff6b6b; --accent: #6cb6ff; --bar: #f0b429;
}
@media (prefers-color-scheme: light) {
  :root {
    --bg: #fbfbf8; --fg: #1d232b; --dim: #66707c; --line: #dcdfe3; --panel: #f1f2ee;
    --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --accent: #0550ae; --bar: #bf8700;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; padding: 12px 16px 24px; background: var(--bg); color: var(--fg);
  font: 13px/1.45 ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace;
}
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 18px; }
header h1 { font-size: 15px; margin: 0; color: var(--accent); }
.kv { color: var(--dim); }
.kv b { color: var(--fg); font-weight: 600; }
.badge { padding: 0 6px; border: 1px solid currentColor; border-radius: 3px; font-weight: 600; }
.good, .kv .good { color: var(--ok); }
.warn, .kv .warn { color: var(--warn); }
.bad, .kv .bad { color: var(--bad); }
.muted, .kv .muted { color: var(--dim); }
#offline {
  margin: 10px 0 0; padding: 6px 10px; border: 1px solid var(--bad); color: var(--bad);
  background: var(--panel);
}
body.stale main { opacity: .45; }
section { margin-top: 16px; }
h2 { font-size: 13px; margin: 0 0 4px; color: var(--dim); font-weight: 600;
     text-transform: uppercase; letter-spacing: .06em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; white-space: nowrap; }
th, td { padding: 2px 10px 2px 0; text-align: right; border-bottom: 1px solid var(--line); }
th { color: var(--dim); font-weight: normal; }
th.group { text-align: center; }
th.g, td.g { border-left: 1px solid var(--line); padding-left: 10px; }
td.text, th.text { text-align: left; }
tr.removed td { color: var(--dim); text-decoration: line-through; }
.empty { color: var(--dim); padding: 4px 0; }
#drain { padding: 8px 10px; border: 1px solid var(--warn); background: var(--panel); }
#drain h2 { color: var(--warn); }
.bar { position: relative; height: 14px; margin: 6px 0; border: 1px solid var(--line);
       background: var(--bg); max-width: 640px; }
.bar > div { position: absolute; inset: 0 auto 0 0; width: 0; background: var(--bar);
             transition: width .9s linear; }
.left span { margin-right: 18px; }
footer { margin-top: 18px; color: var(--dim); }
footer span { margin-right: 18px; }
</style>
</head>
<body data-state="loading" data-polls="0">
<header>
  <h1>sluice</h1>
  <span class="kv">version <b id="version" data-metric="version">…</b></span>
  <span class="kv">state <b id="state" data-metric="state" data-base="badge" class="badge muted">loading</b></span>
  <span class="kv">ready <b id="ready" data-metric="ready">…</b></span>
  <span class="kv">workers <b id="workers" data-metric="workers">…</b></span>
  <span class="kv">uptime <b id="uptime" data-metric="uptime">…</b></span>
  <span class="kv">updated <b id="updated">never</b></span>
</header>
<div id="offline" role="alert" hidden></div>
<main>
<section id="drain" hidden>
  <h2>Drain: <span id="drain-phase" data-metric="drain-phase"></span></h2>
  <div id="drain-note" class="muted"></div>
  <div class="bar" id="drain-progress" role="progressbar" aria-label="drain budget used"
       aria-valuemin="0" aria-valuemax="0" aria-valuenow="0"><div id="drain-fill"></div></div>
  <div><span id="drain-elapsed" data-metric="drain-elapsed"></span> of a
       <span id="drain-budget" data-metric="drain-budget"></span> budget</div>
  <div class="left">left:
    <span>connections <b data-metric="drain-connections"></b></span>
    <span>requests in flight <b data-metric="drain-in-flight"></b></span>
    <span>HTTP/2 streams <b data-metric="drain-http2-streams"></b></span>
    <span>WebSocket sessions <b data-metric="drain-websockets"></b></span>
    <span>gRPC streams <b data-metric="drain-grpc-calls"></b></span>
    <span>closed by force <b data-metric="drain-forced"></b></span>
  </div>
</section>
<section>
  <h2>Listeners</h2>
  <div class="scroll"><table id="listeners">
    <thead>
      <tr><th colspan="2"></th><th colspan="4" class="group g">connections</th>
          <th colspan="6" class="group g">requests</th><th colspan="2" class="group g">latency</th>
          <th colspan="2" class="group g">WebSocket sessions</th></tr>
      <tr><th class="text">name</th><th class="text">address</th><th class="g">active</th>
          <th title="of which HTTP/2">HTTP/2</th><th>total</th>
          <th title="of which HTTP/2">HTTP/2</th>
          <th class="g">1xx</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th>
          <th>req/s</th><th class="g">p50</th><th>p99</th><th class="g">active</th>
          <th class="text">closed</th></tr>
    </thead>
    <tbody></tbody>
  </table></div>
  <div class="empty" id="listeners-empty" hidden>no listeners</div>
</section>
<section>
  <h2>Clusters</h2>
  <div class="scroll"><table id="clusters">
    <thead>
      <tr><th colspan="3"></th><th colspan="4" class="group g">requests</th>
          <th colspan="2" class="group g">latency</th><th colspan="3" class="group g">connections</th>
          <th colspan="4" class="group g">failures</th><th class="g"></th></tr>
      <tr><th class="text">name</th><th class="text">endpoints</th><th class="text">lb</th>
          <th class="g">total</th><th>5xx</th><th>5xx share</th><th>req/s</th><th class="g">p50</th>
          <th>p99</th><th class="g">idle</th><th>active</th><th>created</th>
          <th class="g">retries</th><th>connect</th><th>timeouts</th><th>ejections</th>
          <th class="text g">readiness</th></tr>
    </thead>
    <tbody></tbody>
  </table></div>
  <div class="empty" id="clusters-empty" hidden>no clusters</div>
</section>
<section id="protection">
  <h2>Maintenance and circuit breakers</h2>
  <div class="scroll"><table id="maintenance">
    <thead>
      <tr><th class="text">listener</th><th class="text">maintenance</th><th class="text">set by</th>
          <th>Retry-After</th><th>refused</th></tr>
    </thead>
    <tbody></tbody>
  </table></div>
  <div class="scroll"><table id="breakers">
    <thead>
      <tr><th class="text">cluster</th><th class="text">circuit</th><th>window failures</th>
          <th>in flight</th><th>waiting</th><th>over a cap</th><th>retries refused</th>
          <th class="text">transitions</th></tr>
    </thead>
    <tbody></tbody>
  </table></div>
</section>
<section>
  <h2>Rate limits: the busiest rules</h2>
  <div class="scroll"><table id="ratelimits">
    <thead>
      <tr><th class="text">rule</th><th class="text">listener</th><th class="g">allowed</th>
          <th>limited</th><th>dry run limited</th></tr>
    </thead>
    <tbody></tbody>
  </table></div>
  <div class="empty" id="ratelimits-empty" hidden>no rate-limit rules</div>
  <div class="empty">keys <b data-metric="ratelimit-keys"></b>, evicted
    <b data-metric="ratelimit-evictions"></b>; bans in force <b data-metric="bans-active"></b></div>
</section>
</main>
<footer>
  <span>cpu <b id="cpu" data-metric="cpu-seconds"></b></span>
  <span>rss <b id="rss" data-metric="resident-bytes"></b></span>
  <span>fds <b id="fds" data-metric="open-fds"></b></span>
  <span>reloads <b id="reloads" data-metric="reloads"></b></span>
  <span>access log dropped <b id="log-dropped" data-metric="access-log-dropped"></b></span>
  <span>from <a id="source" href="stats">/stats</a>, every second</span>
</footer>
<script>
'use strict';
const POLL_MS = 1000;
const TIMEOUT_MS = 3000;
const RATE_WINDOW_S = 5;
const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];
const WS_REASONS = ['client', 'upstream', 'drain_close', 'drain_forced', 'error'];
// metric:classes; "g" starts a column group.
const LISTENER_CELLS = ['name:text', 'address:text', 'connections-active:g',
  'connections-http2-active', 'connections-total', 'connections-http2-total',
  'requests-1xx:g', 'requests-2xx', 'requests-3xx', 'requests-4xx', 'requests-5xx', 'rps',
  'p50:g', 'p99', 'ws-active:g', 'ws-closed:text'];
const CLUSTER_CELLS = ['name:text', 'endpoints:text', 'load-balancing:text', 'requests-total:g',
  'requests-5xx', 'error-rate', 'rps', 'p50:g', 'p99', 'pool-idle:g', 'pool-active',
  'connections-created', 'retries:g', 'connect-failures', 'timeouts', 'ejections',
  'readiness:text g'];
const MAINTENANCE_CELLS = ['name:text', 'maintenance:text', 'source:text', 'retry-after',
  'refused'];
const BREAKER_CELLS = ['name:text', 'circuit:text', 'window-failures', 'in-flight', 'pending',
  'overflow', 'retry-budget-exhausted', 'transitions:text'];
const RATELIMIT_CELLS = ['rule:text', 'listener:text', 'allowed:g', 'limited',
  'dry-run-limited'];
const BUSIEST_RULES = 10;
const PHASE_NOTES = {
  delay: 'readiness fails so load balancers stop sending; new connections are still served',
  draining: 'no new connections; idle ones are closed, in-flight requests finish',
  done: 'everything has closed; sluice exits on its signal (POST /resume serves again)',
};

const samples = new Map();  // rate key -> [{t, n}], t in sluice's uptime seconds
const sampled = new Set();  // the rate keys of the current answer; others are forgotten
let polls = 0;
let failingSince = null;
let failures = 0;

const $ = (id) => document.getElementById(id);
const num = (v) => (typeof v === 'number' && isFinite(v) ? v : 0);
const int = (n) => num(n).toLocaleString('en-US');
const sum = (o, keys) => keys.reduce((a, k) => a + num(o && o[k]), 0);

function clock(d) { return d.toTimeString().slice(0, 8); }

function duration(s) {
  s = Math.floor(num(s));
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  const pad = (x) => String(x).padStart(2, '0');
  if (d) return d + 'd ' + pad(h) + 'h ' + pad(m) + 'm';
  if (h) return h + 'h ' + pad(m) + 'm ' + pad(s % 60) + 's';
  if (m) return m + 'm ' + pad(s % 60) + 's';
  return s + 's';
}

function seconds(s) { return num(s).toFixed(1) + ' s'; }

function bytes(n) {
  n = num(n);
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(2) + ' GiB';
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + ' MiB';
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + ' KiB';
  return n + ' B';
}

// The histogram's bucket bounds: the quantile is at most this.
function upper(latency, key) {
  if (!latency || !num(latency.count)) return ['', '—'];
  if (latency[key] === null) return ['', '> 30 s'];  // beyond the last histogram bucket
  const ms = num(latency[key]);
  return [ms, '≤ ' + (ms >= 1000 ? +(ms / 1000).toFixed(2) + ' s' : +ms.toFixed(2) + ' ms')];
}

// Requests per second over the last RATE_WINDOW_S seconds of sluice's own clock; null until
// two samples exist. A counter going back (a restart, a listener re-created) starts afresh.
function rate(key, t, n) {
  sampled.add(key);
  let h = samples.get(key);
  if (!h) samples.set(key, h = []);
  const last = h[h.length - 1];
  if (last && (t < last.t || n < last.n)) h.length = 0;
  if (!last || t > last.t) h.push({t, n});
  while (h.length > 2 && t - h[1].t >= RATE_WINDOW_S) h.shift();
  if (h.length < 2) return null;
  return (n - h[0].n) / (t - h[0].t);
}

function perSecond(r) {
  if (r === null) return ['', '—'];
  return [r, r >= 100 ? int(Math.round(r)) : r.toFixed(1)];
}

function set(root, metric, value, text, cls) {
  const e = root.querySelector('[data-metric="' + metric + '"]');
  if (!e) return;
  e.dataset.value = value;
  e.textContent = text === undefined ? (typeof value === 'number' ? int(value) : value) : text;
  e.className = (e.dataset.base || '') + (cls ? ' ' + cls : '');
}

function row(table, attr, name, cells) {
  const body = table.tBodies[0];
  for (const r of body.rows) if (r.dataset[attr] === name) return r;
  const r = body.insertRow();
  r.dataset[attr] = name;
  for (const spec of cells) {
    const [metric, kind] = spec.split(':');
    const c = r.insertCell();
    c.dataset.metric = metric;
    c.dataset.base = kind || '';
    c.className = kind || '';
  }
  return r;
}

function prune(table, attr, keep) {
  for (const r of Array.from(table.tBodies[0].rows))
    if (!keep.has(r.dataset[attr])) r.remove();
}

function renderListeners(list, t) {
  const table = $('listeners');
  const keep = new Set();
  for (const l of list) {
    keep.add(l.name);
    const r = row(table, 'listener', l.name, LISTENER_CELLS);
    r.classList.toggle('removed', l.configured === false);
    set(r, 'name', l.name, l.configured === false ? l.name + ' (removed)' : l.name);
    set(r, 'address', l.address || '', l.address || '—');
    set(r, 'connections-active', num(l.connections_active));
    set(r, 'connections-total', num(l.connections_total));
    // The protocol split: HTTP/2 connections each carry many streams (requests) at once.
    const h2 = (l.connections_by_protocol && l.connections_by_protocol.http2) || {};
    set(r, 'connections-http2-active', num(h2.active));
    set(r, 'connections-http2-total', num(h2.total));
    for (const c of CLASSES) {
      const n = num(l.requests && l.requests[c]);
      set(r, 'requests-' + c, n, undefined, c === '5xx' && n ? 'bad' : '');
    }
    set(r, 'rps', ...perSecond(rate('l:' + l.name, t, sum(l.requests, CLASSES))));
    set(r, 'p50', ...upper(l.latency, 'p50_ms_at_most'));
    set(r, 'p99', ...upper(l.latency, 'p99_ms_at_most'));
    set(r, 'ws-active', num(l.websocket_sessions_active));
    const closed = l.websocket_sessions_closed || {};
    const total = sum(closed, WS_REASONS);
    const parts = WS_REASONS.filter((k) => num(closed[k])).map((k) => k + ' ' + int(closed[k]));
    set(r, 'ws-closed', total, total ? int(total) + ' (' + parts.join(', ') + ')' : '0');
    const cell = r.querySelector('[data-metric="ws-closed"]');
    for (const k of WS_REASONS) cell.dataset[k.replace('_', '')] = num(closed[k]);
  }
  prune(table, 'listener', keep);
  $('listeners-empty').hidden = list.length > 0;
}

function renderClusters(list, readiness, t) {
  const table = $('clusters');
  const keep = new Set();
  for (const c of list) {
    keep.add(c.name);
    const r = row(table, 'cluster', c.name, CLUSTER_CELLS);
    r.classList.toggle('removed', c.configured === false);
    set(r, 'name', c.name, c.configured === false ? c.name + ' (removed)' : c.name);
    const eps = Array.isArray(c.endpoints) ? c.endpoints : [];
    set(r, 'endpoints', eps.join(' '), eps.length ? eps.join(', ') : '—');
    set(r, 'load-balancing', c.load_balancing || '', c.load_balancing || '—');
    const total = sum(c.requests, CLASSES);
    const errors = num(c.requests && c.requests['5xx']);
    set(r, 'requests-total', total);
    set(r, 'requests-5xx', errors, undefined, errors ? 'bad' : '');
    const share = total ? errors / total : 0;
    set(r, 'error-rate', share, total ? (100 * share).toFixed(share && share < .001 ? 2 : 1) + '%'
        : '—', share >= .01 ? 'bad' : share > 0 ? 'warn' : '');
    set(r, 'rps', ...perSecond(rate('c:' + c.name, t, total)));
    set(r, 'p50', ...upper(c.latency, 'p50_ms_at_most'));
    set(r, 'p99', ...upper(c.latency, 'p99_ms_at_most'));
    set(r, 'pool-idle', num(c.pool_idle));
    set(r, 'pool-active', num(c.pool_active));
    set(r, 'connections-created', num(c.connections_created));
    for (const [metric, key] of [['retries', 'retries'], ['connect-failures', 'connect_failures'],
                                 ['timeouts', 'timeouts'], ['ejections', 'ejections']]) {
      const n = num(c[key]);
      set(r, metric, n, undefined, n ? 'warn' : '');
    }
    if (readiness && c.name in readiness)
      set(r, 'readiness', readiness[c.name] ? 'ready' : 'not ready', undefined,
          readiness[c.name] ? 'good' : 'bad');
    else
      set(r, 'readiness', 'not checked', undefined, 'muted');
  }
  prune(table, 'cluster', keep);
  $('clusters-empty').hidden = list.length > 0;
}

// Maintenance modes per listener, circuit breakers and caps per cluster (issue 17).
function renderProtection(s) {
  const modes = s.maintenance || {};
  const guards = s.cluster_guards || {};
  const mt = $('maintenance');
  const keepL = new Set();
  for (const l of Array.isArray(s.listeners) ? s.listeners : []) {
    if (l.configured === false) continue;
    keepL.add(l.name);
    const r = row(mt, 'listener', l.name, MAINTENANCE_CELLS);
    const m = modes[l.name] || {};
    const mode = l.maintenance_mode || 'off';
    set(r, 'name', l.name);
    set(r, 'maintenance', mode, undefined, mode === 'off' ? 'good' : mode === 'full' ? 'bad' : 'warn');
    set(r, 'source', m.source || 'file');
    set(r, 'retry-after', num(m.retry_after_s), num(m.retry_after_s) + ' s');
    set(r, 'refused', num(l.maintenance_rejected));
  }
  prune(mt, 'listener', keepL);
  const bt = $('breakers');
  const keepC = new Set();
  for (const c of Array.isArray(s.clusters) ? s.clusters : []) {
    if (c.configured === false) continue;
    keepC.add(c.name);
    const r = row(bt, 'cluster', c.name, BREAKER_CELLS);
    const g = guards[c.name] || {};
    set(r, 'name', c.name);
    const circuit = g.circuit || 'none';
    set(r, 'circuit', circuit, circuit === 'open' && g.open_for_s ? 'open (' + g.open_for_s + ' s)'
        : circuit, circuit === 'open' ? 'bad' : circuit === 'half_open' ? 'warn'
        : circuit === 'none' ? 'muted' : 'good');
    set(r, 'window-failures', num(g.window_failures),
        g.circuit ? int(g.window_failures) + ' of ' + int(g.window_requests) : '—');
    set(r, 'in-flight', num(g.requests_in_flight));
    set(r, 'pending', num(g.pending));
    const over = num(c.overflow && c.overflow.requests) + num(c.overflow && c.overflow.pending);
    set(r, 'overflow', over, undefined, over ? 'warn' : '');
    set(r, 'retry-budget-exhausted', num(c.retry_budget_exhausted), undefined,
        num(c.retry_budget_exhausted) ? 'warn' : '');
    const t = c.circuit_transitions || {};
    const moves = ['open', 'half_open', 'closed'].filter((k) => num(t[k]))
        .map((k) => k + ' ' + int(t[k]));
    set(r, 'transitions', moves.length, moves.length ? moves.join(', ') : '—');
  }
  prune(bt, 'cluster', keepC);
}

function renderDrain(d) {
  const phase = (d && d.phase) || 'serving';
  const box = $('drain');
  box.hidden = phase === 'serving';
  if (box.hidden) return;
  const budget = num(d.budget_s), elapsed = num(d.elapsed_s);
  const used = budget > 0 ? Math.min(1, elapsed / budget) : 1;
  set(box, 'drain-phase', phase);
  $('drain-note').textContent = PHASE_NOTES[phase] || '';
  const bar = $('drain-progress');
  bar.setAttribute('aria-valuemax', String(budget));
  bar.setAttribute('aria-valuenow', String(Math.min(elapsed, budget)));
  bar.dataset.fraction = used.toFixed(3);
  $('drain-fill').style.width = (100 * used).toFixed(1) + '%';
  set(box, 'drain-elapsed', elapsed, seconds(elapsed));
  set(box, 'drain-budget', budget, seconds(budget));
  set(box, 'drain-connections', num(d.connections));
  set(box, 'drain-in-flight', num(d.in_flight));
  set(box, 'drain-http2-streams', num(d.http2_streams));
  set(box, 'drain-websockets', num(d.websockets));
  set(box, 'drain-grpc-calls', num(d.grpc_calls));
  set(box, 'drain-forced', num(d.forced), undefined, num(d.forced) ? 'bad' : '');
}

// The rules that refused the most (then admitted the most), at most BUSIEST_RULES of them.
function renderRateLimits(g) {
  const table = $('ratelimits');
  const rules = (g && Array.isArray(g.ratelimit_rules) ? g.ratelimit_rules : []).slice();
  const refused = (r) => num(r.limited) + num(r.dry_run_limited);
  rules.sort((a, b) => refused(b) - refused(a) || num(b.allowed) - num(a.allowed));
  const shown = rules.slice(0, BUSIEST_RULES);
  const keep = new Set();
  shown.forEach((r, i) => {
    const key = r.rule + '@' + r.listener;
    keep.add(key);
    const tr = row(table, 'rule', key, RATELIMIT_CELLS);
    table.tBodies[0].appendChild(tr);  // in the order of the sort
    set(tr, 'rule', r.rule, r.dry_run ? r.rule + ' (dry run)' : r.rule);
    set(tr, 'listener', r.listener);
    set(tr, 'allowed', num(r.allowed));
    set(tr, 'limited', num(r.limited), undefined, num(r.limited) ? 'warn' : '');
    set(tr, 'dry-run-limited', num(r.dry_run_limited));
  });
  prune(table, 'rule', keep);
  $('ratelimits-empty').hidden = shown.length > 0;
  set(document, 'ratelimit-keys', num(g && g.ratelimit_keys));
  set(document, 'ratelimit-evictions', num(g && g.ratelimit_evictions));
  set(document, 'bans-active', num(g && g.bans_active), undefined,
      num(g && g.bans_active) ? 'warn' : '');
}

function render(s) {
  const t = num(s.uptime_s);
  const phase = (s.drain && s.drain.phase) || (s.draining ? 'draining' : 'serving');
  const serving = phase === 'serving';
  document.body.dataset.state = serving ? 'serving' : 'draining';
  document.body.dataset.phase = phase;
  set(document, 'version', s.version || '?');
  set(document, 'state', serving ? 'serving' : 'draining',
      serving || phase === 'draining' ? phase : 'draining (' + phase + ')',
      serving ? 'good' : 'warn');
  const readiness = s.readiness || {};
  const notReady = Object.keys(readiness).filter((k) => !readiness[k]);
  const ready = serving && notReady.length === 0;
  set(document, 'ready', ready ? 'yes' : 'no',
      ready ? 'yes' : !serving ? 'no (draining)' : 'no (' + notReady.join(', ') + ')',
      ready ? 'good' : 'bad');
  set(document, 'workers', num(s.workers));
  set(document, 'uptime', t, duration(t));
  renderDrain(s.drain);
  sampled.clear();
  renderListeners(Array.isArray(s.listeners) ? s.listeners : [], t);
  renderClusters(Array.isArray(s.clusters) ? s.clusters : [], readiness, t);
  renderProtection(s);
  renderRateLimits(s.client_guard);
  for (const key of Array.from(samples.keys())) if (!sampled.has(key)) samples.delete(key);
  const p = s.process || {};
  set(document, 'cpu-seconds', num(p.cpu_seconds), num(p.cpu_seconds).toFixed(2) + ' s');
  set(document, 'resident-bytes', num(p.resident_bytes), bytes(p.resident_bytes));
  set(document, 'open-fds', num(p.open_fds));
  const rl = s.reloads || {};
  set(document, 'reloads', num(rl.success) + num(rl.failure),
      int(rl.success) + ' ok, ' + int(rl.failure) + ' failed', num(rl.failure) ? 'warn' : '');
  set(document, 'access-log-dropped', num(s.access_log_dropped), undefined,
      num(s.access_log_dropped) ? 'warn' : '');
  document.title = 'sluice · ' + (serving ? 'serving' : 'draining');
}

function offline(reason) {
  failures += 1;
  if (failingSince === null) failingSince = new Date();
  document.body.classList.add('stale');
  document.body.dataset.state = 'unreachable';
  set(document, 'state', 'unreachable', 'not answering', 'bad');
  set(document, 'ready', 'unknown', '?', 'muted');
  const box = $('offline');
  box.hidden = false;
  box.textContent = 'sluice is not answering (' + reason + ') since ' + clock(failingSince) +
      ', ' + failures + (failures === 1 ? ' attempt' : ' attempts') +
      '; retrying every second. The figures below are from the last answer.';
  document.title = 'sluice · not answering';
}

// One request at a time, at most one a second. A failure to get /stats is shown on the page;
// a failure to show what was got is a bug of this page and is left to reach the console.
async function poll() {
  const started = Date.now();
  try {
    let s;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const r = await fetch('stats', {cache: 'no-store', signal: abort.signal});
      if (!r.ok) throw new Error('/stats answered HTTP ' + r.status);
      s = await r.json();
    } catch (e) {
      offline(e && e.name === 'AbortError' ? 'no answer within ' + TIMEOUT_MS / 1000 + ' s'
              : (e && e.message) || String(e));
      return;
    } finally {
      clearTimeout(timer);
    }
    render(s);
    failures = 0;
    failingSince = null;
    $('offline').hidden = true;
    document.body.classList.remove('stale');
    $('updated').textContent = clock(new Date());
    polls += 1;
    document.body.dataset.polls = String(polls);
  } finally {
    setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)));
  }
}

poll();
</script>
</body></html>
)HTML";
  return page;
}

}  // namespace sluice
