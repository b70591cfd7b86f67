"""One self-contained HTML page per analysis: inline CSS, SVG and JavaScript, no network access.

The page shows (data from :func:`graphengine.report.figures.figures`):

- the summary figures: the QoI, Z, the pooled path entropy H, exp(H) (the effective number of
  paths) and the share of Z carried by the drawn paths of the chosen token;
- the tokens as a heatmap, switchable between |gradient|, gradient·input, M⁺, entropy and the
  branch (Q/K/V/skip) the token's top path takes in each layer; clicking a token chooses it;
- the layer × position grid with the chosen token's top path drawn through it and its k best
  paths overlaid (when a ``kbest`` semiring was computed), and the path's steps;
- the per-layer flow: for each layer, the share of tokens whose top path leaves the layer input
  through the query, key, value or skip branch.

The address fragment chooses the token and the heatmap: ``report.html#token=5&mode=entropy``
(modes ``grad_norm``, ``grad_x_input``, ``max_plus``, ``entropy``, ``branch``).

Signed statistics (gradient·input, M⁺) use a red–blue scale centred at 0, the others a white–blue
scale from 0 to their maximum. Graphs without recognisable BERT attention layers get the token
heatmap, the summary and the steps of each top path, and a note saying why the rest is missing.

>>> import numpy as np
>>> from graphengine.ir import Graph
>>> from graphengine.engine import forward, select
>>> from graphengine.report.figures import report_backward
>>> g = Graph(); x = g.input("x", (1, 2))
>>> y = g.call("linear", x, g.parameter("W", np.array([[1.0, 2.0], [3.0, -1.0]])), name="y")
>>> q = g.call("sum", y, name="q")
>>> page = render_html(report_backward(g, forward(g, {"x": np.ones((1, 2))}), select("q", ())),
...                    tokens=["<a>", "b"], title="toy")
>>> page.startswith("<!DOCTYPE html>"), "&lt;a&gt;" in page, "http" in page.replace("http-equiv", "")
(True, True, False)
"""

from __future__ import annotations

import html
import json
from typing import Dict, Optional, Sequence

from .figures import figures

REPORT_SCHEMA_VERSION = 1  # of the JSON embedded in the page (id "report-data"); see docs/report.md

MODES = (("grad_norm", "|gradient|"), ("grad_x_input", "gradient·input"), ("max_plus", "M⁺"),
         ("entropy", "entropy"), ("branch", "branch per layer"))


def render_html(result, tokens: Optional[Sequence[str]] = None, start=None, title: str = "graphengine report",
                subtitle: str = "") -> str:
    """The page as a string (see the module docstring); arguments as for :func:`figures`."""
    return page_from_figures(figures(result, tokens=tokens, start=start), title, subtitle)


def write_html(result, path: str, tokens: Optional[Sequence[str]] = None, start=None,
               title: str = "graphengine report", subtitle: str = "", writer=None) -> str:
    """Write :func:`render_html`'s page to ``path``; returns ``path``.

    ``writer(path, text)`` does the writing; by default :func:`graphengine.io.write_text`
    (atomic: a failed write leaves nothing behind and never clobbers an existing file).
    """
    from ..io import write_text

    page = render_html(result, tokens=tokens, start=start, title=title, subtitle=subtitle)
    (writer or write_text)(path, page)
    return path


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    return f"{v:.6g}"


def page_from_figures(data: Dict, title: str, subtitle: str = "") -> str:
    """The page for :func:`figures` data (``render_html`` without the computation)."""
    data = {**data, "schema_version": REPORT_SCHEMA_VERSION, "title": title}
    e = html.escape
    s = data["summary"]
    chosen = data["chosen"]
    share = s["drawn_share"][chosen] if s["drawn_share"] else None
    cards = [("QoI", s["qoi"], f"{data['qoi_node']}"), ("Z", s["Z"], "Σ|product| over all paths from the start node"),
             ("entropy H", s["entropy"], "nats, pooled over the start node"),
             ("exp(H)", s["effective_paths"] if s["effective_paths"] != "inf" else
              f"10^{s['log10_effective_paths']:.1f}", "effective number of paths"),
             ("share of Z drawn", share, "Σ|product| of the drawn paths / Z")]
    card_html = "".join(
        f'<div class="card"><div class="k">{e(k)}</div><div class="v" id="card-{i}">{e(_fmt(v))}</div>'
        f'<div class="h">{e(h)}</div></div>' for i, (k, v, h) in enumerate(cards))
    modes = "".join(f'<button data-mode="{m}"{" class=on" if m == "grad_norm" else ""}>{e(label)}</button>'
                    for m, label in MODES if m != "branch" or data["branches"])
    toks = "".join(f'<span class="tok" data-i="{i}" title="{e(t)}">{e(t)}</span>'
                   for i, t in enumerate(data["tokens"]))
    notes = "".join(f'<p class="note">{e(n)}</p>' for n in data["notes"])
    kbest = data["kbest"] or "none computed (add kbest:K to --semiring)"
    payload = json.dumps(data, allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{e(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{e(title)}</h1>
<p class="sub">{e(subtitle)} start node <code>{e(data['start'])}</code> {e(str(data['start_shape']))},
QoI on <code>{e(data['qoi_node'])}</code>; k-best: {e(kbest)}</p>
{notes}
<section><div class="cards">{card_html}</div></section>
<section><h2>Tokens</h2>
<div class="modes">{modes}</div>
<div id="tokens">{toks}</div>
<div id="legend"></div>
<div id="branches"></div>
<p class="hint">Click a token to draw its paths.</p></section>
<section><h2>Paths of <span id="chosen-token"></span></h2>
<div id="grid"></div>
<details><summary>steps of the top path</summary><table id="steps"></table></details></section>
<section><h2>Per-layer flow</h2><div id="flow"></div></section>
<script type="application/json" id="report-data">{payload}</script>
<script>{_JS}</script>
</body></html>
"""


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:18px 0 8px}.sub{color:#555;margin:0 0 8px}
code{background:#f3f3f3;padding:0 3px;border-radius:3px}.note{background:#fff6d6;padding:6px 10px;border-radius:4px}
.cards{display:flex;gap:10px;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:150px}
.card .k{font-size:12px;color:#666}.card .v{font-size:20px;font-weight:600;font-variant-numeric:tabular-nums}
.card .h{font-size:11px;color:#888}
.modes button{border:1px solid #bbb;background:#fafafa;padding:4px 10px;margin:0 4px 8px 0;border-radius:4px;cursor:pointer}
.modes button.on{background:#2b6cb0;color:#fff;border-color:#2b6cb0}
#tokens{display:flex;flex-wrap:wrap;gap:4px;font-size:16px}
.tok{padding:4px 7px;border-radius:4px;border:2px solid transparent;cursor:pointer;white-space:pre}
.tok.sel{border-color:#111}#legend{font-size:12px;color:#555;margin:6px 0}
#branches table{border-collapse:collapse;font-size:12px}#branches td{padding:2px 5px;text-align:center}
#steps,#drawn{font-size:12px;border-collapse:collapse}#steps td,#drawn td{padding:1px 8px;border-bottom:1px solid #eee}
.hint{font-size:12px;color:#777}svg text{font-size:11px;fill:#333}
"""

_JS = r"""
(function(){
'use strict';
const D = JSON.parse(document.getElementById('report-data').textContent);
const BC = {Q:'#e69f00', K:'#56b4e9', V:'#009e73', skip:'#9a9a9a', other:'#cc79a7', '':'#ffffff'};
const SIGNED = {grad_x_input:true, max_plus:true};
const probe = document.createElement('div'); probe.innerHTML = '<svg></svg>';
const NS = probe.firstChild.namespaceURI;  // the SVG namespace, without a URL in the page
let mode = 'grad_norm', chosen = D.chosen;
const num = v => typeof v === 'number' ? v : (v === 'inf' ? Infinity : v === '-inf' ? -Infinity : NaN);
const fmt = v => v === null || v === undefined ? 'n/a' : (typeof v === 'string' ? v : (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : v.toPrecision(4)));
function el(tag, attrs, parent){ const x = document.createElementNS(NS, tag); for (const k in attrs) x.setAttribute(k, attrs[k]); if (parent) parent.appendChild(x); return x; }
function color(v, lim, signed){
  if (!isFinite(v)) return '#dddddd';
  const t = lim > 0 ? Math.min(1, Math.abs(v) / lim) : 0;
  const mix = (a, b) => Math.round(255 + (b - 255) * t);
  if (signed && v < 0) return `rgb(${mix(0,214)},${mix(0,96)},${mix(0,77)})`;
  return `rgb(${mix(0,43)},${mix(0,108)},${mix(0,176)})`;
}
function heat(){
  const spans = document.querySelectorAll('#tokens .tok');
  const bt = document.getElementById('branches'); bt.innerHTML = '';
  const lg = document.getElementById('legend');
  if (mode === 'branch'){
    spans.forEach(s => { s.style.background = '#fff'; s.style.color = '#222'; });
    const tab = document.createElement('table');
    const head = tab.insertRow(); head.insertCell().textContent = 'layer';
    D.tokens.forEach(t => head.insertCell().textContent = t);
    D.layers.forEach((L, l) => { const r = tab.insertRow(); r.insertCell().textContent = L;
      D.branches.forEach(row => { const c = r.insertCell(); c.textContent = row[l]; c.style.background = BC[row[l]] || '#fff'; }); });
    bt.appendChild(tab);
    lg.textContent = 'branch through which each token\'s best unit leaves each layer input (max semiring backpointers): Q query, K key, V value, skip residual';
    return;
  }
  const vals = D.stats[mode].map(num);
  const lim = Math.max(0, ...vals.filter(isFinite).map(Math.abs));
  spans.forEach((s, i) => { const v = vals[i]; s.style.background = color(v, lim, SIGNED[mode]);
    s.style.color = isFinite(v) && lim > 0 && Math.abs(v) / lim > 0.6 ? '#fff' : '#222';
    s.title = D.tokens[i] + ': ' + fmt(D.stats[mode][i]); });
  lg.textContent = (SIGNED[mode] ? 'red negative, blue positive, ' : 'white 0 to blue ') + '|max| = ' + fmt(lim) + ' (grey: not finite or no path)';
}
function grid(){
  const box = document.getElementById('grid'); box.innerHTML = '';
  document.getElementById('chosen-token').textContent = '"' + D.tokens[chosen] + '" (position ' + chosen + ')';
  document.getElementById('card-4').textContent = fmt(D.summary.drawn_share[chosen]);
  const paths = D.paths[chosen] || [];
  const steps = document.getElementById('steps'); steps.innerHTML = '';
  if (paths.length){
    const h = steps.insertRow(); ['node', 'element', 'local derivative'].forEach(t => h.insertCell().textContent = t);
    paths[0].steps.forEach(s => { const r = steps.insertRow(); r.insertCell().textContent = s.name;
      r.insertCell().textContent = '[' + s.element.join(', ') + ']'; r.insertCell().textContent = s.d === null ? 'QoI' : fmt(s.d); });
  }
  if (!D.layers.length){ box.textContent = paths.length ? 'top path weight ' + fmt(paths[0].weight) + ' (' + paths[0].steps.length + ' steps, listed below)' : 'no path from this position reaches the QoI'; return; }
  const T = D.tokens.length, R = D.layers.length + 1;
  const cw = Math.max(34, Math.min(90, 1000 / T)), rh = 46, left = 70, top = 16, bottom = 60;
  const W = left + cw * T + 20, H = top + rh * (R - 1) + bottom;
  const svg = el('svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img'}, box);
  const X = p => left + cw * (p + 0.5), Y = r => top + rh * (R - 1 - r);
  for (let r = 0; r < R; r++){
    el('text', {x: 4, y: Y(r) + 4}, svg).textContent = r < R - 1 ? 'layer ' + D.layers[r] : 'QoI';
    for (let p = 0; p < T; p++) el('circle', {cx: X(p), cy: Y(r), r: 3, fill: '#ccc'}, svg);
  }
  D.tokens.forEach((t, p) => { const tx = el('text', {x: X(p), y: Y(0) + 22, 'text-anchor': 'end',
    transform: `rotate(-40 ${X(p)} ${Y(0) + 22})`}, svg); tx.textContent = t; if (p === chosen) tx.setAttribute('font-weight', 'bold'); });
  const maxw = Math.max(...paths.map(q => Math.abs(num(q.weight))).filter(isFinite), 0) || 1;
  paths.slice().reverse().forEach(q => {
    const dx = q.rank === 0 ? 0 : 4 * q.rank;  // k-best lines sit beside the top path where they coincide
    const pts = q.points.map(([r, p]) => [X(p === null ? (T - 1) / 2 : p) + dx, Y(r)]);
    const top1 = q.rank === 0;
    el('polyline', {points: pts.map(a => a.join(',')).join(' '), fill: 'none',
      stroke: top1 ? '#c0392b' : '#2b6cb0', 'stroke-opacity': top1 ? 0.95 : 0.45,
      'stroke-width': top1 ? 3 : 1 + 3 * Math.abs(num(q.weight)) / maxw, class: top1 ? 'top-path' : 'kbest-path'}, svg)
      .appendChild(el('title', {})).textContent = (top1 ? 'top path' : 'path ' + q.rank) + ', product ' + fmt(q.weight);
    if (top1) q.points.forEach(([r, p, b], i) => { if (!b) return;
      el('circle', {cx: pts[i][0], cy: pts[i][1], r: 9, fill: BC[b] || '#fff', stroke: '#333'}, svg);
      const lab = el('text', {x: pts[i][0], y: pts[i][1] + 4, 'text-anchor': 'middle'}, svg); lab.textContent = b === 'skip' ? 'S' : b; });
  });
  if (!paths.length) el('text', {x: left, y: top + 10}, svg).textContent = 'no path from this position reaches the QoI';
  const list = document.createElement('table'); list.id = 'drawn';
  const h = list.insertRow(); ['path', 'product', 'layer: position branch'].forEach(t => h.insertCell().textContent = t);
  paths.forEach(q => { const r = list.insertRow();
    r.insertCell().textContent = q.rank === 0 ? 'top (red)' : 'k-best ' + (q.rank + 1) + ' (blue)';
    r.insertCell().textContent = fmt(q.weight);
    r.insertCell().textContent = q.points.filter(pt => pt[0] < D.layers.length)
      .map(([l, p, b]) => D.layers[l] + ': ' + D.tokens[p] + ' ' + b).join(' → '); });
  box.appendChild(list);
}
function flow(){
  const box = document.getElementById('flow');
  if (!D.flow){ box.textContent = 'needs a graph with recognisable BERT attention layers'; return; }
  const L = D.flow.layers.length, bw = 520, rh = 24, left = 70;
  const svg = el('svg', {width: left + bw + 230, height: rh * L + 40, role: 'img'}, box);
  D.flow.layers.forEach((layer, l) => {
    let x = left; const y = 8 + l * rh;
    el('text', {x: 4, y: y + 15}, svg).textContent = 'layer ' + layer;
    D.flow.branches.forEach((b, j) => { const w = bw * D.flow.top_share[l][j];
      if (w > 0){ el('rect', {x: x, y: y, width: w, height: rh - 6, fill: BC[b]}, svg)
        .appendChild(el('title', {})).textContent = b + ': ' + (100 * D.flow.top_share[l][j]).toFixed(1) + '% of tokens, mean credited M⁺ ' + fmt(D.flow.mean_mplus[l][j]); }
      x += w; });
    el('text', {x: left + bw + 8, y: y + 15}, svg).textContent = D.flow.branches.map((b, j) => b + ' ' + Math.round(100 * D.flow.top_share[l][j]) + '%').join('  ');
  });
  const ly = 8 + L * rh + 10; let lx = left;
  D.flow.branches.forEach(b => { el('rect', {x: lx, y: ly, width: 12, height: 12, fill: BC[b]}, svg);
    el('text', {x: lx + 16, y: ly + 10}, svg).textContent = b; lx += 70; });
}
document.querySelectorAll('.modes button').forEach(b => b.addEventListener('click', () => {
  document.querySelectorAll('.modes button').forEach(x => x.classList.remove('on')); b.classList.add('on');
  mode = b.dataset.mode; heat(); }));
document.querySelectorAll('#tokens .tok').forEach(s => s.addEventListener('click', () => {
  chosen = +s.dataset.i; document.querySelectorAll('#tokens .tok').forEach(x => x.classList.toggle('sel', x === s)); grid(); }));
const want = new URLSearchParams(location.hash.slice(1));  // e.g. report.html#token=5&mode=entropy
if (want.has('token') && +want.get('token') >= 0 && +want.get('token') < D.tokens.length) chosen = Math.floor(+want.get('token'));
const pick = document.querySelector(`.modes button[data-mode="${want.get('mode')}"]`);
if (pick){ document.querySelectorAll('.modes button').forEach(x => x.classList.remove('on')); pick.classList.add('on'); mode = pick.dataset.mode; }
document.querySelectorAll('#tokens .tok')[chosen].classList.add('sel');
heat(); grid(); flow();
})();
"""
