"""The web page at `/`: pick or drop an image (or try a drawn sample), see its overlay, the classes
with their shares and the timings. Self-contained (inline CSS and JS, nothing fetched but the API);
every name from the server or a file is set with textContent, never parsed as HTML.

`/#sample` segments the sample as soon as the page loads (the browser test drives it so); when the
page is done, `<body data-state>` is "done" (or "error", the message in #status).
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>segcli serve</title>
<style>
 body{font:15px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
 header{background:#1d2330;color:#fff;padding:10px 20px}
 header small{opacity:.7;margin-left:8px}
 main{display:grid;grid-template-columns:minmax(0,2fr) minmax(260px,1fr);gap:20px;padding:20px}
 #drop{border:2px dashed #8a93a6;border-radius:8px;padding:22px;text-align:center;background:#fff;cursor:pointer}
 #drop.over{border-color:#2f6fde;background:#eef3fd}
 #result img{width:100%;max-width:720px;margin-top:14px;border-radius:6px;box-shadow:0 1px 4px #0003}
 aside{background:#fff;border-radius:8px;padding:14px 16px;align-self:start}
 table{border-collapse:collapse;width:100%}td{padding:3px 6px;border-bottom:1px solid #eceef2}
 td.n{text-align:right;font-variant-numeric:tabular-nums}
 .sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}
 #status{margin-top:10px;min-height:1.4em}.error{color:#b3261e}
 label{display:block;margin-top:10px;font-size:13px}input[type=password]{width:100%}
 button{margin-top:10px}
</style></head>
<body data-state="idle">
<header><strong>segcli serve</strong><small id="model"></small></header>
<main>
 <section>
  <div id="drop" tabindex="0">Drop an image here or click to pick one
   <input id="file" type="file" accept="image/*" hidden></div>
  <button id="sample" type="button">Try a drawn sample</button>
  <div id="status"></div>
  <div id="result"><img id="overlay" alt="overlay" hidden></div>
 </section>
 <aside>
  <h3>Classes</h3><table id="classes"></table>
  <h3>Timings (ms)</h3><table id="timings"></table>
  <label>Token (only if the server was started with one)<input id="token" type="password" autocomplete="off"></label>
 </aside>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let palette = [];

function headers(type) {
  const h = {"Content-Type": type || "application/octet-stream"};
  const token = $("token").value.trim();
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

function say(text, state) {
  $("status").textContent = text;
  $("status").className = state === "error" ? "error" : "";
  document.body.dataset.state = state;
}

function cell(row, text, numeric) {
  const td = row.insertCell();
  td.textContent = text;
  if (numeric) td.className = "n";
  return td;
}

async function answer(response) {
  if (response.ok) return response;
  let message = response.statusText;
  try { message = (await response.json()).error || message; } catch (e) { /* not JSON: keep the status text */ }
  throw new Error(response.status + ": " + message);
}

async function loadModel() {
  try {
    const model = await (await answer(await fetch("v1/models", {headers: headers()}))).json();
    $("model").textContent = model.model + " \\u00b7 " + model.checkpoint + " \\u00b7 " + model.device;
    palette = model.classes.map((c) => c.color);
  } catch (e) { $("model").textContent = "(model: " + e.message + ")"; }
}

function showClasses(summary) {
  const table = $("classes");
  table.replaceChildren();
  const present = summary.classes_present.slice().sort((a, b) => b.pixel_fraction - a.pixel_fraction);
  for (const c of present) {
    const row = table.insertRow();
    const name = cell(row, "");
    const swatch = document.createElement("span");
    swatch.className = "sw";
    const rgb = palette[c.index] || [128, 128, 128];
    swatch.style.background = "rgb(" + rgb.map(Number).join(",") + ")";
    name.append(swatch, document.createTextNode(c.name));
    row.dataset.name = c.name;
    const share = 100 * c.pixel_fraction;
    cell(row, (share > 0 && share < 0.05 ? "<0.1" : share.toFixed(1)) + " %", true);
  }
}

function showTimings(summary, serverTiming, roundTrip) {
  const table = $("timings");
  table.replaceChildren();
  const rows = Object.entries(summary.timings_ms);
  for (const part of (serverTiming || "").split(",")) {
    const match = /^\\s*([\\w-]+);dur=([\\d.]+)/.exec(part);
    if (match) rows.push(["server " + match[1], Number(match[2])]);
  }
  rows.push(["round trip", roundTrip]);
  for (const [name, ms] of rows) {
    const row = table.insertRow();
    cell(row, name);
    cell(row, Number(ms).toFixed(1), true);
  }
}

async function segment(blob, name) {
  say("segmenting " + name + " \\u2026", "busy");
  const query = "&name=" + encodeURIComponent(name);
  const started = performance.now();
  try {
    const [overlay, summary] = await Promise.all(["overlay", "json"].map((kind) =>
      fetch("v1/segment?outputs=" + kind + query, {method: "POST", body: blob, headers: headers(blob.type)})
        .then(answer)));
    const image = await overlay.blob();
    const document_ = await summary.json();
    const roundTrip = performance.now() - started;
    const img = $("overlay");
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(image);
    img.hidden = false;
    await img.decode();
    showClasses(document_);
    showTimings(document_, summary.headers.get("Server-Timing"), roundTrip);
    say(name + ": " + document_.size[0] + "\\u00d7" + document_.size[1], "done");
  } catch (e) { say(name + ": " + e.message, "error"); }
}

function drawSample() {
  const canvas = document.createElement("canvas");
  canvas.width = 160; canvas.height = 120;
  const g = canvas.getContext("2d");
  g.fillStyle = "#6a8fb5"; g.fillRect(0, 0, 160, 120);
  g.fillStyle = "#3d7a3a"; g.fillRect(0, 80, 160, 40);
  g.fillStyle = "#c0392b"; g.beginPath(); g.arc(60, 60, 22, 0, 2 * Math.PI); g.fill();
  g.fillStyle = "#f1c40f"; g.fillRect(100, 40, 30, 30);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

const drop = $("drop");
drop.addEventListener("click", () => $("file").click());
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
$("file").addEventListener("change", () => { const f = $("file").files[0]; if (f) segment(f, f.name); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  const f = e.dataTransfer.files[0];
  if (f) segment(f, f.name);
});
$("sample").addEventListener("click", async () => segment(await drawSample(), "sample.png"));
$("token").addEventListener("change", loadModel);
loadModel().then(async () => { if (location.hash === "#sample") segment(await drawSample(), "sample.png"); });
</script>
</body></html>
"""
