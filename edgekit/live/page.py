"""The live view's page: HTML, script and style, served from these strings (never from disk).

The script polls /stats.json once a second and writes every value with ``textContent`` (a
label from a model never becomes markup); the video is an ``<img>`` on /stream.mjpg. The
Content-Security-Policy allows nothing but this server.
"""
from __future__ import annotations

CSP = ("default-src 'none'; img-src 'self'; script-src 'self'; style-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgekit live view</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <h1>edgekit <span class="dim">live view</span></h1>
  <div id="what" class="dim">connecting...</div>
</header>
<main>
  <section class="video">
    <img id="video" src="/stream.mjpg" alt="the annotated video, live">
  </section>
  <section class="side">
    <div class="figures">
      <div><span class="label">FPS</span><span id="fps" class="value">-</span></div>
      <div><span class="label">frames</span><span id="frames" class="value">-</span></div>
      <div><span class="label">dropped</span><span id="dropped" class="value">-</span></div>
      <div><span class="label">decode failures</span>
           <span id="decode_failures" class="value">-</span></div>
    </div>
    <table id="stages">
      <thead><tr><th>stage</th><th>p50 ms</th><th>p90 ms</th><th>now ms</th></tr></thead>
      <tbody></tbody>
    </table>
    <canvas id="chart" width="360" height="130" aria-label="per-stage milliseconds, last
      minute"></canvas>
    <div id="legend" class="legend"></div>
    <h2><span id="result_title">latest detections</span>
        <span id="latest_frame" class="dim"></span></h2>
    <ol id="detections"></ol>
  </section>
</main>
<footer>
  <span id="backend" class="dim"></span><br>
  <span id="status" class="dim"></span>
</footer>
</body>
</html>
"""

ICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">
<rect x="1" y="3" width="14" height="10" rx="2" fill="#1f1f1f" stroke="#e15759" stroke-width="1.5"/>
<circle cx="8" cy="8" r="2.5" fill="#e15759"/></svg>
"""

STYLE = """
:root { color-scheme: dark; --fg: #e8e8e8; --dim: #9a9a9a; --bg: #141414; --panel: #1f1f1f; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header, footer { padding: 8px 16px; }
h1 { font-size: 18px; margin: 0; }
h2 { font-size: 14px; margin: 12px 0 4px; }
.dim { color: var(--dim); font-weight: normal; }
main { display: flex; flex-wrap: wrap; gap: 16px; padding: 0 16px; }
.video { flex: 2 1 480px; }
.video img { width: 100%; background: #000; min-height: 120px; display: block; }
.side { flex: 1 1 300px; background: var(--panel); padding: 8px 12px; }
.figures { display: grid; grid-template-columns: 1fr 1fr; gap: 6px; }
.figures div { display: flex; flex-direction: column; }
.label { color: var(--dim); font-size: 12px; }
.value { font-size: 22px; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; margin-top: 10px;
        font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: 2px 6px; }
th:first-child, td:first-child { text-align: left; }
canvas { width: 100%; height: auto; margin-top: 10px; background: #101010; }
.legend span { margin-right: 10px; font-size: 12px; }
ol { margin: 0; padding-left: 20px; font-variant-numeric: tabular-nums; }
li.none { list-style: none; margin-left: -20px; }
li meter { width: 90px; margin-left: 8px; vertical-align: middle; }
"""

SCRIPT = """
"use strict";
const COLORS = { preprocess: "#4e79a7", infer: "#e15759", postprocess: "#59a14f",
                 sink: "#edc948", end_to_end: "#e8e8e8" };
const ORDER = ["capture", "preprocess", "infer", "postprocess", "sink"];
// The chart leaves capture out: for a camera it is mostly the wait for the next frame.
const CHARTED = ["preprocess", "infer", "postprocess", "sink", "end_to_end"];
const HISTORY = 60;
const history = {};
const $ = (id) => document.getElementById(id);
const ms = (v) => (v === null || v === undefined) ? "-" : v.toFixed(2);

function setText(id, text) { $(id).textContent = text; }

function stages(s) {
  const names = ORDER.filter((n) => s.stages_ms && s.stages_ms[n]);
  const body = $("stages").tBodies[0];
  const rows = names.map((n) => [n, s.stages_ms[n].p50, s.stages_ms[n].p90,
                                 (s.recent_ms || {})[n]]);
  if (s.end_to_end_ms) {
    rows.push(["end to end", s.end_to_end_ms.p50, s.end_to_end_ms.p90,
               (s.recent_ms || {}).end_to_end]);
  }
  body.replaceChildren(...rows.map(([name, p50, p90, now]) => {
    const tr = document.createElement("tr");
    tr.dataset.stage = name;
    for (const text of [name, ms(p50), ms(p90), ms(now)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    return tr;
  }));
  for (const n of CHARTED.filter((c) => (s.recent_ms || {})[c] != null)) {
    const h = history[n] || (history[n] = []);
    h.push(s.recent_ms[n]);
    if (h.length > HISTORY) h.shift();
  }
}

function chart() {
  const canvas = $("chart");
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 4;
  g.clearRect(0, 0, w, h);
  const all = Object.values(history).flat();
  const top = Math.max(1, ...all) * 1.1;
  g.strokeStyle = "#333";
  g.fillStyle = "#777";
  g.font = "10px sans-serif";
  g.beginPath(); g.moveTo(0, pad); g.lineTo(w, pad); g.stroke();
  g.fillText(top.toFixed(1) + " ms", 4, 14);
  for (const [name, values] of Object.entries(history)) {
    g.strokeStyle = COLORS[name] || "#fff";
    g.lineWidth = 1.5;
    g.beginPath();
    values.forEach((v, i) => {
      const x = w - (values.length - 1 - i) * (w / (HISTORY - 1));
      const y = h - pad - (v / top) * (h - 2 * pad);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
  $("legend").replaceChildren(...Object.keys(history).map((name) => {
    const span = document.createElement("span");
    span.textContent = "\\u25a0 " + name.replace(/_/g, " ");
    span.style.color = COLORS[name] || "#fff";
    return span;
  }));
}

// What the latest frame's result says, by task: a list item per detection, class (with a
// score bar), share of the mask or output. Text only, through textContent.
const TITLES = { detection: "latest detections", classification: "top classes",
                 segmentation: "classes in the mask", generic: "outputs" };

function item(text, value) {
  const li = document.createElement("li");
  li.textContent = text;
  if (value !== undefined) {
    const bar = document.createElement("meter");
    bar.min = 0; bar.max = 1; bar.value = Math.max(0, Math.min(1, value));
    li.appendChild(bar);
  }
  return li;
}

function resultItems(latest) {
  if (latest.detections) {
    return latest.detections.map((d) => item((d.label || d.class_id) + "  " +
      d.score.toFixed(2) + "  [" + d.box.map((v) => Math.round(v)).join(", ") + "]"));
  }
  if (latest.classes) {
    const shown = latest.smoothed || latest.classes;
    return shown.map((c) => item((c.label || c.class_id) + "  " + c.score.toFixed(2), c.score));
  }
  if (latest.shares) {
    return Object.entries(latest.shares).sort((a, b) => b[1] - a[1]).map(([name, share]) =>
      item(name + "  " + (100 * share).toFixed(1) + "%", share));
  }
  return (latest.outputs || []).map((o, i) => item("out" + i + " " + o.shape.join("x") +
    (o.values ? ": " + o.values.join(" ") :
     o.mean !== undefined ? ": mean " + o.mean + ", min " + o.min + ", max " + o.max : "")));
}

function results(s) {
  const latest = s.latest || {};
  setText("result_title", TITLES[latest.task || s.task] || TITLES.detection);
  setText("latest_frame", s.latest ? "(frame " + s.latest.frame + ")" : "");
  const items = s.latest ? resultItems(latest) : [];
  if (!items.length) {
    const li = item(latest.detections ? "none above the score threshold" : "none yet");
    li.className = "dim none";
    items.push(li);
  }
  $("detections").replaceChildren(...items);
}

const STATES = {
  starting: () => "waiting for the first frame",
  running: () => "running",
  stalled: (t) => "stalled: no frame for " + t + " s",
  reconnecting: (t) => "reconnecting to the source: no frame for " + t + " s",
  ended: () => "the loop has ended",
};

function render(s) {
  const artifact = (s.artifact || "").split("/").pop();
  setText("what", [s.source, artifact].filter(Boolean).join("  \\u2192  "));
  setText("backend", s.backend || "");
  const fps = (s.running === false ? s.fps : s.fps_recent) || 0;
  setText("fps", fps.toFixed(1));
  setText("frames", String(s.frames || 0));
  setText("dropped", String(s.dropped || 0));
  setText("decode_failures", String(s.decode_failures || 0));
  stages(s);
  chart();
  results(s);
  const when = new Date().toLocaleTimeString();
  setText("status", (STATES[s.state] || STATES.running)(Math.round(s.since_frame_s || 0)) +
          "; updated " + when + "; viewers " + (s.viewers || 0));
}

async function poll() {
  try {
    const r = await fetch("/stats.json", { cache: "no-store", credentials: "same-origin" });
    if (r.status === 401) {
      setText("status", "this view needs its token: open /?token=TOKEN once");
      return;
    }
    render(await r.json());
  } catch (e) {
    setText("status", "no answer from the device (" + e + "); retrying");
  }
}

function watchVideo() {
  const img = $("video");
  img.addEventListener("error", () => {
    setTimeout(() => { img.src = "/stream.mjpg?retry=" + Date.now(); }, 2000);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  watchVideo();
  poll();
  setInterval(poll, 1000);
});
"""
