// gankit demo: a run's generator drawn in the browser from generator.onnx with onnxruntime-web's
// WASM backend. The contract (noise, classes, output shape) comes from gankit export, inlined in
// index.html. index.html?class=3&t=0.5 sets the controls. Test hook: index.html?z=[...]&y=[...] draws
// G on exactly those inputs (a flat list of n * noise_dim numbers, n labels) and writes its raw output
// into <pre id="out"> as JSON.
"use strict";

const contract = JSON.parse(document.getElementById("contract").textContent);
const [C, H, W] = contract.output.shape.slice(1);  // the output is (batch, C, H, W) in [-1, 1]
const D = contract.noise_dim, K = contract.num_classes;  // K = 0: not conditional
const COLS = 8, ROWS = K || 8, PAD = 2, SCALE = 3;
const $ = id => document.getElementById(id);

function fail(e) {  // errors go into the page, where a test (and a reader) sees them
  $("errors").textContent += String((e && e.stack) || e) + "\n";
  document.title = "error";
}
window.addEventListener("error", e => fail(e.error || e.message));
window.addEventListener("unhandledrejection", e => fail(e.reason));

ort.env.wasm.numThreads = 1;  // one thread needs no cross-origin isolation
ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;  // the copies beside this page, never a CDN

// z as gankit.sample.sample_noise draws it
const PRIOR = {
  normal: () => Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random()),  // Box-Muller
  uniform: () => Math.random(),  // U[0, 1)
  uniform_signed: () => 2 * Math.random() - 1,  // U[-1, 1)
};
const noise = n => Float32Array.from({length: n * D}, PRIOR[contract.noise]);

let session;
async function generate(z, y) {  // -> G(z, y) as a flat Float32Array (n, C, H, W)
  const n = z.length / D;
  const feeds = {z: new ort.Tensor("float32", z, [n, D])};
  if (K) feeds.y = new ort.Tensor("int64", BigInt64Array.from(y, BigInt), [n]);
  return (await session.run(feeds)).x.data;
}

function draw(x, n) {  // n images in [-1, 1] -> a grid on the canvas, grey or RGB
  const canvas = $("grid"), cols = Math.min(n, COLS), rows = Math.ceil(n / cols);
  canvas.width = cols * (W + PAD) + PAD;
  canvas.height = rows * (H + PAD) + PAD;
  canvas.style.width = canvas.width * SCALE + "px";
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(canvas.width, canvas.height);
  const byte = v => Math.round((Math.min(Math.max(v, -1), 1) + 1) * 127.5);
  for (let i = 0; i < n; i++) {
    const left = PAD + (i % cols) * (W + PAD), top = PAD + Math.floor(i / cols) * (H + PAD);
    for (let r = 0; r < H; r++) {
      for (let c = 0; c < W; c++) {
        const p = 4 * ((top + r) * canvas.width + left + c);
        for (let k = 0; k < 3; k++) img.data[p + k] = byte(x[((i * C + (C === 3 ? k : 0)) * H + r) * W + c]);
      }
    }
  }
  for (let p = 3; p < img.data.length; p += 4) img.data[p] = 255;  // opaque; the padding stays black
  ctx.putImageData(img, 0, 0);
  canvas.dataset.variance = variance(ctx.getImageData(0, 0, canvas.width, canvas.height).data).toFixed(3);
}

function variance(rgba) {  // of what the canvas holds (red channel): 0 for a blank grid
  let sum = 0, sum2 = 0;
  for (let p = 0; p < rgba.length; p += 4) { sum += rgba[p]; sum2 += rgba[p] * rgba[p]; }
  const m = rgba.length / 4;
  return sum2 / m - (sum / m) ** 2;
}

// the interactive grid: each cell's z is (1 - t) zA + t zB
let zA, zB, running = false, again = false;
function labels() {  // the picked class in every cell, or row r of class r
  const pick = $("class").value;
  return Array.from({length: ROWS * COLS}, (_, i) => (pick === "rows" ? Math.floor(i / COLS) : +pick));
}
async function render() {  // one session.run at a time; a change meanwhile renders once more after it
  if (running) return void (again = true);
  running = true;
  try {
    do {
      again = false;
      const t = +$("t").value, z = zA.map((a, i) => (1 - t) * a + t * zB[i]);
      draw(await generate(z, labels()), ROWS * COLS);
    } while (again);
    document.title = "ready";
  } catch (e) {
    fail(e);
  } finally {
    running = false;
  }
}

async function fixed(z, y) {  // the test hook: G on exactly these inputs, raw output into #out
  const x = await generate(Float32Array.from(z), y);
  draw(x, z.length / D);
  $("out").textContent = JSON.stringify(Array.from(x));
  document.title = "done";
}

async function main() {
  if (location.protocol === "file:")  // the browser refuses to fetch generator.onnx and ort's files from a file:// page
    return fail("This page cannot run opened as a file: serve its folder over http, e.g. " +
                "python -m http.server -d FOLDER, then open http://localhost:8000/");
  session = await ort.InferenceSession.create("generator.onnx", {executionProviders: ["wasm"]});
  const q = new URLSearchParams(location.search);
  if (q.has("z")) return fixed(JSON.parse(q.get("z")), JSON.parse(q.get("y") || "[]"));
  if (K) {
    for (let k = 0; k < K; k++) $("class").add(new Option(`class ${k}`, k));
    $("picker").hidden = false;
  }
  for (const id of ["class", "t"]) {  // e.g. ?class=3&t=0.5; a value the control cannot take is said, not dropped
    if (!q.has(id)) continue;
    const want = q.get(id);
    $(id).value = want;
    if (id === "class" ? $(id).value !== want : !(Math.abs($(id).value - want) <= 0.0051))
      fail(`?${id}=${want}: expected ` + (id === "t" ? "a number from 0 to 1" :
           K ? `rows or a class from 0 to ${K - 1}` : "nothing: this generator draws no classes"));
  }
  zA = noise(ROWS * COLS);
  zB = noise(ROWS * COLS);
  $("new").onclick = () => { zA = noise(ROWS * COLS); zB = noise(ROWS * COLS); $("t").value = 0; render(); };
  $("t").oninput = render;
  $("class").onchange = render;
  await render();
}
main().catch(fail);
