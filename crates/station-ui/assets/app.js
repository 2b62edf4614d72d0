// Station UI: one page, no framework. Views by address: #/ (sessions), #/s/ID (a session),
// #/s/ID/t/N (a task's diff). API calls carry the bearer token from #token=... when set.
'use strict';

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v; else if (k === 'text') node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
};

// The token arrives in the fragment (never sent to the server) and stays for this tab only.
(function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem('stn-ui-token', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + '#/');
  }
})();

function headers(extra = {}) {
  const token = sessionStorage.getItem('stn-ui-token');
  return token ? { ...extra, Authorization: 'Bearer ' + token } : extra;
}

function status(text, isError = false) {
  const s = $('#status');
  s.textContent = text;
  s.classList.toggle('error', isError);
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: headers(options.body ? { 'Content-Type': 'application/json' } : {}) });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const message = (body.error || res.statusText) + (body.fix ? ' — ' + body.fix : '');
    status(message, true);
    throw new Error(message);
  }
  return body;
}

const fmtTime = (t) => t ? new Date(t).toLocaleString() : '-';
const fmtCost = (c) => c ? '$' + Number(c).toFixed(4) : '-';
const fmtTokens = (u) => u ? ((u.input_tokens || 0) + (u.output_tokens || 0)).toLocaleString() : '0';

// ---- session list ----
let listTimer = null;
async function showList() {
  $('#list-view').hidden = false;
  $('#session-view').hidden = true;
  stopStream();
  liveFor = null;
  const params = new URLSearchParams();
  for (const [key, sel] of [['backend', '#filter-backend'], ['q', '#filter-text'], ['state', '#filter-state']]) {
    if ($(sel).value) params.set(key, $(sel).value);
  }
  const page = await api('/api/sessions?' + params);
  const select = $('#filter-backend');
  const chosen = select.value;
  select.replaceChildren(el('option', { value: '', text: 'all' }), ...page.backends.map((b) => el('option', { value: b, text: b })));
  select.value = chosen;
  const rows = page.sessions.map((s) => el('tr', { 'data-session': s.id },
    el('td', {}, el('a', { href: '#/s/' + encodeURIComponent(s.id), text: s.title || s.id })),
    el('td', { text: s.backend }),
    el('td', { class: 'state-' + s.state, text: s.state }),
    el('td', {}, el('time', { datetime: s.last_used_at, text: fmtTime(s.last_used_at) })),
    el('td', { class: 'num', text: fmtTokens(s.usage_total) }),
    el('td', { class: 'num', text: fmtCost(s.cost_total_usd) })));
  $('#sessions tbody').replaceChildren(...rows);
  $('#list-count').textContent = page.sessions.length + ' session(s)';
  status('');
}

// ---- one session ----
let current = null;
async function showSession(id, task) {
  $('#list-view').hidden = true;
  $('#session-view').hidden = false;
  const page = await api('/api/sessions/' + encodeURIComponent(id));
  current = page;
  const s = page.session;
  $('#session-title').textContent = s.title || s.id;
  const meta = [['Id', s.id], ['Backend', s.backend + (s.backend_session_id ? ' · ' + s.backend_session_id : '')],
    ['Workspace', s.workspace || '-'], ['State', page.state], ['Created', fmtTime(s.created_at)], ['Last used', fmtTime(s.last_used_at)],
    ['Tokens', fmtTokens(s.usage_total)], ['Cost', fmtCost(s.cost_total_usd)]];
  $('#session-meta').replaceChildren(...meta.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
  $('#tasks tbody').replaceChildren(...page.tasks.map((t) => taskRow(s.id, t)));
  $('#rewind-to').replaceChildren(...page.checkpoints.slice().reverse().map((n) => el('option', { value: n, text: 'task ' + n })));
  $('#rewind-form').hidden = page.checkpoints.length === 0;
  drawChart(page.tasks);
  // The live panel keeps the last run of this session (its outcome) until another is shown.
  if (liveFor !== s.id) { stopStream(); resetLive(); liveFor = s.id; }
  if (page.state === 'running') startStream(s.id);
  if (task) await showDiff(s.id, task); else $('#diff-view').hidden = true;
  status('');
}

function taskRow(sessionId, t) {
  const files = el('ul', { class: 'files' }, ...(t.files_changed || []).map((f) =>
    el('li', { text: `${f.action} ${f.path} (+${f.lines_added} −${f.lines_removed})` })));
  const cell = el('td', {}, files);
  if ((t.files_changed || []).length) {
    cell.append(el('a', { href: `#/s/${encodeURIComponent(sessionId)}/t/${t.number}`, class: 'view-diff', text: `View diff of task ${t.number}` }));
  }
  const outcome = t.success ? 'ok' : 'failed';
  return el('tr', { 'data-task': t.number },
    el('td', { text: t.number }),
    el('td', {}, el('time', { datetime: t.ended_at, text: fmtTime(t.ended_at) })),
    el('td', { class: outcome, text: `${outcome} (${t.stop_reason})` + (t.error ? ': ' + t.error : '') }),
    el('td', { class: 'num', text: `${t.usage.input_tokens || 0} / ${t.usage.output_tokens || 0}` }),
    el('td', { class: 'num', text: fmtCost(t.cost_usd) }),
    el('td', { class: 'num', text: ((t.duration_ms || 0) / 1000).toFixed(1) + ' s' }),
    cell);
}

// Cumulative cost and tokens per ended task: two polylines, each on its own scale.
function drawChart(tasks) {
  const box = $('#chart');
  if (tasks.length === 0) { box.replaceChildren(el('p', { text: 'No tasks yet.' })); return; }
  const W = 600, H = 160, P = 30, ns = 'http://www.w3.org/2000/svg';
  let cost = 0, tokens = 0;
  const pts = tasks.map((t) => {
    cost += t.cost_usd || 0; tokens += (t.usage.input_tokens || 0) + (t.usage.output_tokens || 0);
    return { at: Date.parse(t.ended_at), cost, tokens };
  });
  const t0 = pts[0].at, t1 = pts[pts.length - 1].at, span = Math.max(t1 - t0, 1);
  const x = (p, i) => P + (pts.length === 1 ? (W - 2 * P) / 2 : ((t1 > t0 ? (p.at - t0) / span : i / (pts.length - 1)) * (W - 2 * P)));
  const y = (v, max) => H - P - (max ? v / max : 0) * (H - 2 * P);
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${tasks.length} tasks; total cost ${fmtCost(cost)}, ${tokens.toLocaleString()} tokens`);
  const line = (key, max, color) => {
    const pl = document.createElementNS(ns, 'polyline');
    pl.setAttribute('points', pts.map((p, i) => `${x(p, i).toFixed(1)},${y(p[key], max).toFixed(1)}`).join(' '));
    pl.setAttribute('fill', 'none'); pl.setAttribute('stroke', color); pl.setAttribute('stroke-width', '2');
    pl.setAttribute('class', 'chart-' + key);
    svg.append(pl);
    pts.forEach((p, i) => {
      const dot = document.createElementNS(ns, 'circle');
      dot.setAttribute('cx', x(p, i).toFixed(1)); dot.setAttribute('cy', y(p[key], max).toFixed(1));
      dot.setAttribute('r', '3.5'); dot.setAttribute('fill', color);
      svg.append(dot);
    });
  };
  const text = (str, tx, ty, color) => {
    const t = document.createElementNS(ns, 'text');
    t.setAttribute('x', tx); t.setAttribute('y', ty); t.setAttribute('fill', color); t.setAttribute('font-size', '12');
    t.textContent = str; svg.append(t);
  };
  const axis = document.createElementNS(ns, 'path');
  axis.setAttribute('d', `M${P} ${P / 2} V${H - P} H${W - P}`); axis.setAttribute('stroke', '#767676'); axis.setAttribute('fill', 'none');
  svg.append(axis);
  line('tokens', tokens, '#0b57d0');
  line('cost', cost, '#9b1c1c');
  text(`tokens: ${tokens.toLocaleString()}`, P + 4, 14, '#0b57d0');
  text(`cost: ${fmtCost(cost)}`, W / 2, 14, '#9b1c1c');
  text(fmtTime(t0), P, H - 8, '#4d4d4d');
  box.replaceChildren(svg);
}

// ---- live events (SSE read with fetch, so the token can travel in a header) ----
let stream = null;
let liveFor = null;
function resetLive() {
  $('#live-log').replaceChildren();
  $('#live-text').textContent = '';
  $('#live-state').textContent = 'No task is running from this page.';
  $('#cancel').hidden = true;
}
function stopStream() {
  if (stream) { stream.abort.abort(); stream = null; }
}
async function startStream(id) {
  if (stream && stream.id === id) return;
  stopStream();
  resetLive();
  const abort = new AbortController();
  stream = { id, abort };
  liveFor = id;
  $('#live-state').textContent = 'Task running…';
  $('#cancel').hidden = false;
  try {
    const res = await fetch('/api/sessions/' + encodeURIComponent(id) + '/events', { headers: headers(), signal: abort.signal });
    if (!res.ok) throw new Error('the event stream was refused: ' + res.status);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
        let name = 'message', data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) name = line.slice(6).trim();
          else if (line.startsWith('data:')) data += line.slice(5).replace(/^ /, '');
        }
        if (name === 'task') onTaskEvent(JSON.parse(data));
        if (name === 'idle') $('#live-state').textContent = 'No task is running from this page.';
      }
    }
  } catch (e) {
    if (!abort.signal.aborted) status(String(e.message || e), true);
  }
  if (stream && stream.id === id) {
    stream = null;
    $('#cancel').hidden = true;
    if (location.hash.startsWith('#/s/' + encodeURIComponent(id))) showSession(id, routeTask()).catch(() => {});
  }
}

function logLine(text, cls = '') { $('#live-log').append(el('li', { class: cls, text })); }
function onTaskEvent(ev) {
  switch (ev.type) {
    case 'started': logLine(`started on ${ev.backend}`); break;
    case 'text_delta': $('#live-text').textContent += ev.text; break;
    case 'text': if (!$('#live-text').textContent.endsWith(ev.text)) $('#live-text').textContent += ev.text + '\n'; break;
    case 'tool_started': logLine(`→ ${ev.name}`); break;
    case 'tool_finished': logLine(`← ${ev.name}${ev.error ? ': ' + ev.error : ''}`, ev.error ? 'failed' : ''); break;
    case 'file_edited': logLine(`✎ ${ev.path}`); break;
    case 'permission': logLine(`permission ${ev.record.tool}: ${JSON.stringify(ev.record.verdict)} (rule ${ev.record.rule})`); break;
    case 'notice': logLine(ev.message); break;
    case 'finished': {
      const o = ev.outcome;
      $('#live-state').textContent = `Task ended: ${o.success ? 'ok' : 'failed'} (${o.stop_reason})`;
      logLine(`finished: ${o.stop_reason}`, o.success ? 'ok' : 'failed');
      break;
    }
    case 'failed': $('#live-state').textContent = `Task could not run: ${ev.message}`; logLine(`failed: ${ev.message}`, 'failed'); break;
    default: break;
  }
}

// ---- diff ----
const KEYWORDS = {
  rs: 'as async await break const continue crate else enum fn for if impl in let loop match mod move mut pub ref return self Self static struct trait type unsafe use where while',
  py: 'and as assert async await break class continue def del elif else except finally for from if import in is lambda not or pass raise return try while with yield None True False',
  js: 'async await break case catch class const continue default delete do else export extends for function if import in instanceof let new of return switch this throw try typeof var while yield null true false',
  go: 'break case chan const continue default defer else fallthrough for func go goto if import interface map package range return select struct switch type var nil',
  sh: 'if then else elif fi for in do done case esac while until function return local export',
};
KEYWORDS.ts = KEYWORDS.js; KEYWORDS.jsx = KEYWORDS.js; KEYWORDS.tsx = KEYWORDS.js; KEYWORDS.bash = KEYWORDS.sh;
const kwSets = {};
function keywordsFor(path) {
  const ext = (path.match(/\.([a-z]+)$/i) || [])[1];
  if (!ext || !KEYWORDS[ext.toLowerCase()]) return null;
  return kwSets[ext] ||= new Set(KEYWORDS[ext.toLowerCase()].split(' '));
}
// A code line as nodes: keywords and string literals get a class; everything else is text.
function colour(code, kws) {
  if (!kws) return [document.createTextNode(code)];
  const out = [];
  const re = /("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[A-Za-z_][A-Za-z0-9_]*)/g;
  let last = 0, m;
  while ((m = re.exec(code))) {
    if (m.index > last) out.push(document.createTextNode(code.slice(last, m.index)));
    const tok = m[0];
    if (tok[0] === '"' || tok[0] === "'") out.push(el('span', { class: 'str', text: tok }));
    else if (kws.has(tok)) out.push(el('span', { class: 'kw', text: tok }));
    else out.push(document.createTextNode(tok));
    last = m.index + tok.length;
  }
  if (last < code.length) out.push(document.createTextNode(code.slice(last)));
  return out;
}

function parsePatch(text) {
  const files = [];
  let file = null, oldNo = 0, newNo = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('diff --git ')) { file = { name: line.replace(/^diff --git a\/(.*) b\/.*$/, '$1'), lines: [] }; files.push(file); continue; }
    if (!file) continue;
    if (line.startsWith('+++ ')) { if (line !== '+++ /dev/null') file.name = line.slice(4).replace(/^b\//, ''); continue; }
    if (line.startsWith('--- ') || line.startsWith('index ') || /^(new|deleted) file mode|^similarity|^rename |^Binary/.test(line)) continue;
    const hunk = line.match(/^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/);
    if (hunk) { oldNo = +hunk[1]; newNo = +hunk[2]; file.lines.push({ kind: 'hunk', text: line }); continue; }
    if (line.startsWith('+')) file.lines.push({ kind: 'add', text: line.slice(1), n: newNo++ });
    else if (line.startsWith('-')) file.lines.push({ kind: 'del', text: line.slice(1), o: oldNo++ });
    else if (line.startsWith(' ')) file.lines.push({ kind: 'ctx', text: line.slice(1), o: oldNo++, n: newNo++ });
  }
  return files;
}

let lastPatch = null;
async function showDiff(id, task) {
  const page = await api(`/api/sessions/${encodeURIComponent(id)}/tasks/${task}/patch`);
  lastPatch = page;
  $('#diff-view').hidden = false;
  $('#diff-title').textContent = `Changes of task ${task} (${page.files_changed.length} file(s))`;
  renderDiff();
  $('#diff-title').scrollIntoView({ block: 'start' });
}

function renderDiff() {
  if (!lastPatch) return;
  const split = document.querySelector('input[name=layout]:checked').value === 'split';
  const files = parsePatch(lastPatch.patch);
  const blocks = files.map((f) => {
    const kws = keywordsFor(f.name);
    const table = el('table', { class: 'diff ' + (split ? 'split' : 'unified') });
    table.append(el('caption', { class: 'sr-only', text: 'Changes in ' + f.name }));
    // Fixed layout takes widths from the columns, not from the first (hunk) row.
    const widths = split ? ['ln', 'code', 'ln', 'code'] : ['ln', 'ln', 'code'];
    table.append(el('colgroup', {}, ...widths.map((w) => el('col', { class: 'col-' + w }))));
    const body = el('tbody');
    if (split) splitRows(f.lines, kws).forEach((r) => body.append(r));
    else f.lines.forEach((l) => body.append(unifiedRow(l, kws)));
    table.append(body);
    return el('section', { class: 'diff-file' }, el('h4', { text: f.name }), table);
  });
  $('#diff').replaceChildren(...(blocks.length ? blocks : [el('p', { text: 'This task changed no text files.' })]));
}

const sign = { add: '+', del: '−', ctx: ' ' };
function unifiedRow(l, kws) {
  if (l.kind === 'hunk') return el('tr', { class: 'hunk' }, el('td', { colspan: 3, text: l.text }));
  const code = el('td', { class: 'code' }, sign[l.kind] + ' ', ...colour(l.text, kws));
  return el('tr', { class: l.kind }, el('td', { class: 'ln', text: l.o ?? '' }), el('td', { class: 'ln', text: l.n ?? '' }), code);
}
function splitRows(lines, kws) {
  const rows = [];
  let dels = [], adds = [];
  const cell = (l, kind) => l ? [el('td', { class: 'ln', text: kind === 'add' ? l.n : l.o }), el('td', { class: 'code ' + kind }, ...colour(l.text, kws))]
    : [el('td', { class: 'ln' }), el('td', { class: 'code' })];
  const flush = () => {
    for (let i = 0; i < Math.max(dels.length, adds.length); i++) rows.push(el('tr', {}, ...cell(dels[i], 'del'), ...cell(adds[i], 'add')));
    dels = []; adds = [];
  };
  for (const l of lines) {
    if (l.kind === 'del') { if (adds.length) flush(); dels.push(l); continue; }
    if (l.kind === 'add') { adds.push(l); continue; }
    flush();
    if (l.kind === 'hunk') rows.push(el('tr', { class: 'hunk' }, el('td', { colspan: 4, text: l.text })));
    else rows.push(el('tr', { class: 'ctx' }, ...cell(l, 'ctx'), ...cell(l, 'ctx')));
  }
  flush();
  return rows;
}

// ---- routing and forms ----
function routeTask() {
  const m = location.hash.match(/^#\/s\/[^/]+\/t\/(\d+)/);
  return m ? +m[1] : null;
}
async function route() {
  const m = location.hash.match(/^#\/s\/([^/]+)/);
  try {
    if (m) await showSession(decodeURIComponent(m[1]), routeTask());
    else await showList();
  } catch (e) { /* already shown in the status line */ }
}

window.addEventListener('hashchange', route);
document.addEventListener('DOMContentLoaded', () => {
  $('#filters').addEventListener('input', () => { clearTimeout(listTimer); listTimer = setTimeout(() => showList().catch(() => {}), 150); });
  $('#filters').addEventListener('submit', (e) => e.preventDefault());
  document.querySelectorAll('input[name=layout]').forEach((r) => r.addEventListener('change', renderDiff));
  $('#cancel').addEventListener('click', async () => {
    if (!current) return;
    await api(`/api/sessions/${encodeURIComponent(current.session.id)}/cancel`, { method: 'POST' }).catch(() => {});
    $('#live-state').textContent = 'Cancelling…';
  });
  $('#task-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const id = current.session.id;
    await api(`/api/sessions/${encodeURIComponent(id)}/tasks`, { method: 'POST', body: JSON.stringify({ instruction: $('#task-instruction').value }) })
      .then(() => { $('#task-instruction').value = ''; startStream(id); }).catch(() => {});
  });
  $('#new-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { workspace: $('#new-workspace').value, backend: $('#new-backend').value, title: $('#new-title').value, instruction: $('#new-instruction').value };
    const started = await api('/api/sessions', { method: 'POST', body: JSON.stringify(body) }).catch(() => null);
    if (started) location.hash = '#/s/' + encodeURIComponent(started.session);
  });
  $('#rewind-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const id = current.session.id;
    const body = { to_task: +$('#rewind-to').value, force: $('#rewind-force').checked };
    const done = await api(`/api/sessions/${encodeURIComponent(id)}/rewind`, { method: 'POST', body: JSON.stringify(body) }).catch(() => null);
    if (done) status(`Restored ${done.workspace} to before task ${done.to_task} (${done.files.length} file(s)).`);
  });
  route();
});
