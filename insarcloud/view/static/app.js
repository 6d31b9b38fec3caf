// insarcloud view: velocity map + per-pixel time series, drawn in plain SVG (no library, works offline).
// window.viewer holds the page state; the last pixel's JSON (as served) is window.viewer.lastPixel.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#8c564b"];
const viewer = { meta: null, layer: null, scale: null, lastPixel: null, loads: 0 };
window.viewer = viewer;

function el(name, attrs, parent) {
  const e = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}
function text(parent, x, y, s, attrs) {
  const t = el("text", Object.assign({ x, y }, attrs || {}), parent);
  t.textContent = s;
  return t;
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
function status(msg) { document.getElementById("status").textContent = msg || ""; }

async function getJSON(url) {
  const r = await fetch(url);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function fmt(v, d) { return v === null || v === undefined ? "n/a" : Number(v).toFixed(d === undefined ? 2 : d); }

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(Math.round(v / step) * step);
  return out;
}

// Date ticks: whole years over long spans, else every k months (at most ~8 ticks); [ISO date, label] pairs.
function timeTicks(tmin, tmax) {
  const a = new Date(tmin), b = new Date(tmax), out = [];
  const months = (b.getUTCFullYear() - a.getUTCFullYear()) * 12 + b.getUTCMonth() - a.getUTCMonth() + 1;
  const step = [1, 2, 3, 6, 12, 24, 60].find(k => months / k <= 8) || 120;
  for (let m = a.getUTCFullYear() * 12 + a.getUTCMonth(); m <= b.getUTCFullYear() * 12 + b.getUTCMonth() + 1; m++) {
    const y = Math.floor(m / 12), mo = m % 12;
    if ((step >= 12 && (mo !== 0 || y % (step / 12))) || (step < 12 && mo % step)) continue;
    const d = `${y}-${String(mo + 1).padStart(2, "0")}-01`, t = Date.parse(d);
    if (t >= tmin && t <= tmax) out.push([d, step >= 12 ? String(y) : d.slice(0, 7)]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------- map
function drawColorbar(scale) {
  const svg = document.getElementById("colorbar");
  clear(svg);
  const defs = el("defs", {}, svg);
  const grad = el("linearGradient", { id: "cbgrad", x1: "0", x2: "1", y1: "0", y2: "0" }, defs);
  scale.stops.forEach((c, i) => el("stop", { offset: i / (scale.stops.length - 1), "stop-color": c }, grad));
  el("rect", { x: 10, y: 8, width: 400, height: 14, fill: "url(#cbgrad)", stroke: "#444" }, svg);
  for (const v of niceTicks(scale.vmin, scale.vmax, 5)) {
    const x = 10 + 400 * (v - scale.vmin) / (scale.vmax - scale.vmin);
    el("line", { x1: x, x2: x, y1: 22, y2: 27, class: "axis" }, svg);
    text(svg, x, 39, fmt(v, Math.abs(scale.vmax) < 5 ? 2 : 1), { "text-anchor": "middle" });
  }
  text(svg, 10, 56, `${scale.long_name} (${scale.units})`);
  el("rect", { x: 425, y: 8, width: 14, height: 14, fill: scale.masked_colour, stroke: "#444" }, svg);
  text(svg, 443, 19, `masked ${(100 * scale.masked_share).toFixed(0)}%`);
  svg.dataset.vmin = scale.vmin;
  svg.dataset.vmax = scale.vmax;
  svg.dataset.layer = scale.layer;
}

function drawOverlay() {
  const img = document.getElementById("map"), svg = document.getElementById("overlay");
  const m = viewer.meta, s = m.stride;
  const w = img.naturalWidth, h = img.naturalHeight;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  clear(svg);
  const r = m.reference, k = Math.max(w, h) / 60;
  if (r) {
    if (r.box) {
      const [y0, x0, y1, x1] = r.box;
      el("rect", { x: x0 / s, y: y0 / s, width: (x1 - x0 + 1) / s, height: (y1 - y0 + 1) / s, fill: "none",
                   stroke: "#000", "stroke-width": k / 4, id: "refbox" }, svg);
    }
    const cx = (r.x + 0.5) / s, cy = (r.y + 0.5) / s;
    el("polygon", { id: "refmark", points: `${cx},${cy - k} ${cx - k},${cy + k * 0.8} ${cx + k},${cy + k * 0.8}`,
                    fill: "#000", stroke: "#fff", "stroke-width": k / 6, "data-y": r.y, "data-x": r.x }, svg);
  }
  el("circle", { id: "pick", r: k * 0.7, cx: -100, cy: -100, fill: "none", stroke: "#000", "stroke-width": k / 4 }, svg);
}

async function setLayer(layer) {
  viewer.layer = layer;
  const img = document.getElementById("map");
  const loaded = new Promise((res, rej) => { img.onload = res; img.onerror = () => rej(new Error("map failed")); });
  img.src = `/api/map.png?layer=${encodeURIComponent(layer)}`;
  viewer.scale = await getJSON(`/api/scale?layer=${encodeURIComponent(layer)}`);
  drawColorbar(viewer.scale);
  await loaded;
  drawOverlay();
  if (viewer.lastPixel) markPick(viewer.lastPixel.y, viewer.lastPixel.x);
}

function markPick(iy, ix) {
  const s = viewer.meta.stride, c = document.getElementById("pick");
  if (!c) return;
  c.setAttribute("cx", (ix + 0.5) / s);
  c.setAttribute("cy", (iy + 0.5) / s);
}

// ---------------------------------------------------------------------------------------------- chart
function drawSeries(p) {
  const svg = document.getElementById("chart");
  clear(svg);
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height");
  const L = 56, R = 12, T = 14, B = 86;
  const t = d => Date.parse(d);
  let tmin = Infinity, tmax = -Infinity, vmin = Infinity, vmax = -Infinity;
  const grow = (d, v) => { const x = t(d); tmin = Math.min(tmin, x); tmax = Math.max(tmax, x);
    if (v !== null && isFinite(v)) { vmin = Math.min(vmin, v); vmax = Math.max(vmax, v); } };
  for (const s of p.series) s.dates.forEach((d, i) => {
    const v = s.values[i], e = s.std ? s.std[i] : 0;
    if (v !== null) { grow(d, v - e); grow(d, v + e); } else grow(d, null);
  });
  if (p.forecast) p.forecast.dates.forEach((d, i) => grow(d, p.forecast.values[i]));
  if (!isFinite(vmin)) { vmin = -1; vmax = 1; }
  const pad = 0.06 * (vmax - vmin || 1); vmin -= pad; vmax += pad;
  const X = d => L + (W - L - R) * (t(d) - tmin) / ((tmax - tmin) || 1);
  const Y = v => T + (H - T - B) * (vmax - v) / (vmax - vmin);
  // axes and grid
  for (const v of niceTicks(vmin, vmax, 6)) {
    el("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: "grid" }, svg);
    text(svg, L - 5, Y(v) + 4, fmt(v, Math.abs(vmax - vmin) < 10 ? 1 : 0), { "text-anchor": "end" });
  }
  for (const [d, label] of timeTicks(tmin, tmax)) {
    el("line", { x1: X(d), x2: X(d), y1: T, y2: H - B, class: "grid" }, svg);
    text(svg, X(d), H - B + 15, label, { "text-anchor": "middle" });
  }
  el("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }, svg);
  el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }, svg);
  text(svg, 14, (T + H - B) / 2, "displacement (mm)", { transform: `rotate(-90 14 ${(T + H - B) / 2})`,
                                                        "text-anchor": "middle" });
  // series: precision bars, points, fitted rate
  let lx = L, ly = H - 50;
  const legend = (colour, label) => {
    const w = 20 + 6.2 * label.length;
    if (lx + w > W - R && lx > L) { lx = L; ly += 14; }
    el("rect", { x: lx, y: ly - 9, width: 10, height: 10, fill: colour }, svg);
    text(svg, lx + 14, ly, label);
    lx += w;
  };
  p.series.forEach((s, k) => {
    const c = COLOURS[k % COLOURS.length];
    const g = el("g", { class: "series", "data-name": s.name }, svg);
    s.dates.forEach((d, i) => {
      const v = s.values[i];
      if (v === null) return;
      if (s.std) el("line", { class: "err", x1: X(d), x2: X(d), y1: Y(v - s.std[i]), y2: Y(v + s.std[i]), stroke: c,
                              "data-std": s.std[i] }, g);
      el("circle", { class: "pt", cx: X(d), cy: Y(v), r: 2.6, fill: c, "data-series": s.name, "data-date": d,
                     "data-value": v }, g);
    });
    if (s.fit) el("line", { class: "fit", x1: X(s.fit.start), y1: Y(s.fit.value_start), x2: X(s.fit.end),
                            y2: Y(s.fit.value_end), stroke: c, "data-rate": s.fit.rate_mm_yr }, g);
    const label = `${s.name}: ${s.fit ? fmt(s.fit.rate_mm_yr) : "n/a"}` +
      (s.velocity_std !== null && s.velocity_std !== undefined ? ` ± ${fmt(s.velocity_std)}` : "") + " mm/yr";
    legend(c, label);
  });
  if (p.forecast) {
    const pts = p.forecast.dates.map((d, i) => [d, p.forecast.values[i]]).filter(q => q[1] !== null);
    const g = el("g", { class: "series", "data-name": "forecast" }, svg);
    el("polyline", { class: "forecast", points: pts.map(q => `${X(q[0])},${Y(q[1])}`).join(" ") }, g);
    for (const [d, v] of pts) el("circle", { cx: X(d), cy: Y(v), r: 1.6, fill: "#7b3294", "data-series": "forecast",
                                             "data-date": d, "data-value": v }, g);
    legend("#7b3294", `forecast (${p.forecast.model || "model"})`);
  }
  const srcs = [...new Set(p.series.map(s => s.std_source).filter(Boolean))];
  text(svg, L, H - 6, srcs.length ? `bars: ±1σ of one epoch (${srcs.join("; ")})` : "no precision available for this pixel",
       { fill: "#666" });
}

function drawPairs(p) {
  const svg = document.getElementById("pairs");
  clear(svg);
  if (!p.pairs) { text(svg, 10, 20, "no quality group in this cube: pair quality not available", { fill: "#666" }); return; }
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height"), L = 56, R = 12, T = 18, B = 24;
  const names = p.pairs.names, q = p.pairs.quality;
  const d8 = s => Date.parse(`${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}`);
  const ts = names.flatMap(n => n.split("_").map(d8));
  const tmin = Math.min(...ts), tmax = Math.max(...ts);
  const X = v => L + (W - L - R) * (v - tmin) / ((tmax - tmin) || 1), Y = v => T + (H - T - B) * (1 - v);
  for (const v of [0, 0.5, 1]) {
    el("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: "grid" }, svg);
    text(svg, L - 5, Y(v) + 4, String(v), { "text-anchor": "end" });
  }
  text(svg, L, 12, "quality of each pair at this pixel (1 = good), drawn from primary to secondary date");
  names.forEach((n, i) => {
    if (q[i] === null) return;
    const [a, b] = n.split("_").map(d8), v = q[i];
    const c = `rgb(${Math.round(220 * (1 - v))},${Math.round(170 * v)},40)`;
    el("line", { x1: X(a), x2: X(b), y1: Y(v), y2: Y(v), stroke: c, "stroke-width": 2, class: "pair",
                 "data-pair": n, "data-quality": v }, svg);
  });
  const bad = q.filter(v => v !== null && v < 0.5).length;
  text(svg, L, H - 6, `${names.length} pairs, ${bad} below 0.5, ${q.filter(v => v === null).length} without a value`,
       { fill: "#666" });
}

function drawInfo(p) {
  const vals = Object.entries(p.values).map(([k, v]) => `${k} ${fmt(v)}`).join(", ");
  document.getElementById("info").textContent =
    `pixel (y ${p.y}, x ${p.x}) at ${fmt(p.lat, 4)}°N ${fmt(p.lon, 4)}°E: ${vals}` +
    (p.n_pairs_used !== undefined && p.n_pairs_used !== null ? `; ${p.n_pairs_used} pairs used` : "");
}

async function loadPixel(iy, ix) {
  markPick(iy, ix);
  try {
    const p = await getJSON(`/api/pixel?y=${iy}&x=${ix}`);
    viewer.lastPixel = p;
    drawSeries(p);
    drawPairs(p);
    drawInfo(p);
    status("");
    viewer.loads += 1;
    document.body.dataset.pixel = `${iy},${ix}`;
  } catch (err) { status(`pixel (${iy}, ${ix}): ${err.message}`); }
}

function onClick(ev) {
  const m = viewer.meta, img = document.getElementById("map");
  const box = ev.currentTarget.getBoundingClientRect();
  const fx = (ev.clientX - box.left) / box.width, fy = (ev.clientY - box.top) / box.height;
  const ix = Math.min(m.nx - 1, Math.max(0, Math.floor(fx * img.naturalWidth) * m.stride));
  const iy = Math.min(m.ny - 1, Math.max(0, Math.floor(fy * img.naturalHeight) * m.stride));
  loadPixel(iy, ix);
}

async function init() {
  try {
    const m = viewer.meta = await getJSON("/api/meta");
    document.getElementById("meta").textContent =
      `${m.kind === "area" ? "area cube" : "frame " + (m.frame || "")} ${m.group ? "· " + m.group : ""} · ` +
      `${m.ny} × ${m.nx} px · ${m.sign}`;
    const sel = document.getElementById("layer");
    for (const l of m.layers) { const o = document.createElement("option"); o.value = l; o.textContent = l; sel.appendChild(o); }
    sel.addEventListener("change", () => setLayer(sel.value));
    document.getElementById("overlay").addEventListener("click", onClick);
    await setLayer(m.layers[0]);
    document.body.dataset.ready = "1";
  } catch (err) { status(`cannot load the cube: ${err.message}`); }
}
viewer.loadPixel = loadPixel;
document.addEventListener("DOMContentLoaded", init);
