// insarcloud QC review page: one uncertain tile at a time; every verdict is POSTed (and written to the
// bucket by the server) before the page moves on.
"use strict";
const state = { tiles: [], pos: 0, size: 256, drawing: false, boxes: [], drag: null, busy: false };
const $ = (id) => document.getElementById(id);

function setStatus(text, err) {
  const s = $("status");
  s.textContent = text;
  s.className = err ? "err" : "";
}

function current() { return state.tiles[state.pos]; }

function show() {
  const t = current();
  if (!t) { $("meta").textContent = "no uncertain tiles to review"; return; }
  const done = state.tiles.filter((x) => x.verdict).length;
  $("meta").textContent = `tile ${t.tile} (${state.pos + 1}/${state.tiles.length}, ${done} reviewed)  ` +
    `frame ${t.frame}  pair ${t.pair}  y0=${t.y0} x0=${t.x0}  ` +
    (t.verdict ? `verdict: ${t.verdict.verdict}` : "no verdict yet");
  for (const k of ["phase", "coh", "closure", "label"]) {
    $("img-" + k).src = `/api/tile/${t.tile}/${k}.png`;
  }
  state.boxes = t.verdict && t.verdict.bad_mask ? t.verdict.bad_mask.map((b) => b.slice()) : [];
  setDrawing(false);
  redraw();
}

function setDrawing(on) {
  state.drawing = on;
  $("draw").className = on ? "" : "off";
  $("mode").textContent = on ? "[drawing bad areas: drag, Enter to save]" : "";
}

function redraw() {
  const c = $("draw");
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.strokeStyle = "#ff00ff";
  ctx.lineWidth = Math.max(1, state.size / 128);
  const all = state.drag ? state.boxes.concat([state.drag]) : state.boxes;
  for (const [y0, x0, y1, x1] of all) {
    ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
  }
}

function tileXY(ev) {
  const r = $("draw").getBoundingClientRect();
  const x = Math.round(((ev.clientX - r.left) / r.width) * state.size);
  const y = Math.round(((ev.clientY - r.top) / r.height) * state.size);
  return [Math.max(0, Math.min(state.size, y)), Math.max(0, Math.min(state.size, x))];
}

async function send(verdict) {
  const t = current();
  if (!t || state.busy) return;
  const body = { tile: t.tile, verdict: verdict };
  if (verdict === "bad_areas") {
    if (!state.boxes.length) { setStatus("draw at least one box first (b, then drag)", true); return; }
    body.bad_mask = state.boxes.map(([y0, x0, y1, x1]) =>
      [Math.min(y0, y1), Math.min(x0, x1), Math.max(y0, y1), Math.max(x0, x1)]);
  }
  state.busy = true;
  setStatus(`saving tile ${t.tile}: ${verdict} ...`);
  try {
    const r = await fetch("/api/verdict", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const out = await r.json();
    if (!r.ok || !out.ok) throw new Error(out.error || r.statusText);
    t.verdict = out.verdict;
    setStatus(`saved tile ${t.tile}: ${verdict}`);
    if (state.pos < state.tiles.length - 1) state.pos += 1;
    show();
  } catch (e) {
    setStatus(`NOT saved (tile ${t.tile}): ${e.message}`, true);
  } finally {
    state.busy = false;
  }
}

document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const k = ev.key;
  if (k === "a") send("accept");
  else if (k === "r") send("reject");
  else if (k === "b") setDrawing(!state.drawing);
  else if (k === "Enter") send("bad_areas");
  else if (k === "u") { state.boxes.pop(); redraw(); }
  else if (k === "o") { const l = $("img-label"); l.style.opacity = l.style.opacity === "0" ? ".55" : "0"; }
  else if (k === "n" || k === "ArrowRight") { if (state.pos < state.tiles.length - 1) { state.pos += 1; show(); } }
  else if (k === "p" || k === "ArrowLeft") { if (state.pos > 0) { state.pos -= 1; show(); } }
  else return;
  ev.preventDefault();
});

$("draw").addEventListener("mousedown", (ev) => {
  if (!state.drawing) return;
  const [y, x] = tileXY(ev);
  state.drag = [y, x, y, x];
});
$("draw").addEventListener("mousemove", (ev) => {
  if (!state.drag) return;
  const [y, x] = tileXY(ev);
  state.drag[2] = y; state.drag[3] = x;
  redraw();
});
$("draw").addEventListener("mouseup", () => {
  if (!state.drag) return;
  const [y0, x0, y1, x1] = state.drag;
  if (y0 !== y1 && x0 !== x1) state.boxes.push(state.drag);
  state.drag = null;
  redraw();
});

(async function init() {
  try {
    const r = await fetch("/api/tiles");
    const data = await r.json();
    state.tiles = data.tiles;
    state.size = data.tile_size;
    $("draw").width = data.tile_size;
    $("draw").height = data.tile_size;
    $("dataset").textContent = data.dataset;
    // start at the first tile without a verdict
    const first = state.tiles.findIndex((t) => !t.verdict);
    state.pos = first >= 0 ? first : 0;
    show();
    document.body.dataset.ready = "1";
  } catch (e) {
    setStatus("cannot load the tile list: " + e.message, true);
  }
})();
