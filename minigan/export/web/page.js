// The page: a grid of new samples, a button for a new batch, and a walk between two samples
// the user clicks. URL options: ?n=64 (samples), ?seed=7 (noise seed), ?steps=10 (walk
// length), #z=BASE64 (fixed noise: little-endian float32, n * z_dim values).
// Test hook: body[data-state] is "ready" once a batch or walk is drawn; window.minigan.
"use strict";

(function () {
  const model = window.MINIGAN_GENERATOR;
  const $ = (id) => document.getElementById(id);
  const status = (text) => { $("status").textContent = text; };
  if (!model) {
    status("weights.js did not load: keep it in the same folder as index.html.");
    return;
  }
  const G = new MiniganGenerator.Generator(model);
  const [C, H, W] = G.imageShape;
  const params = new URLSearchParams(location.search);
  const hash = new URLSearchParams(location.hash.slice(1));
  const scale = Math.max(1, Math.round(96 / W));
  const walkSteps = Math.max(2, Number(params.get("steps")) || 10);
  let count = Math.max(1, Number(params.get("n")) || 64);
  let batch = null, picked = [], drawing = 0, walkTimer = null;

  function tile(image) {
    const canvas = document.createElement("canvas");
    canvas.width = W; canvas.height = H;
    canvas.style.width = `${W * scale}px`; canvas.style.height = `${H * scale}px`;
    canvas.getContext("2d").putImageData(
      new ImageData(MiniganGenerator.toRGBA(image, G.imageShape), W, H), 0, 0);
    return canvas;
  }

  const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

  // Draw G(z) for every row of z into `box`, a few at a time so the page stays responsive.
  async function render(z, box, onTile) {
    const id = ++drawing, n = z.length / G.zDim, images = [];
    document.body.dataset.state = "drawing";
    box.replaceChildren();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      if (id !== drawing) return null;                      // a newer request took over
      const image = G.forward(z.subarray(i * G.zDim, (i + 1) * G.zDim));
      images.push(image);
      const canvas = tile(image);
      if (onTile) onTile(canvas, i);
      box.appendChild(canvas);
      if (i % 4 === 3) { status(`drawing ${i + 1} / ${n}`); await tick(); }
    }
    return { images, seconds: (performance.now() - t0) / 1000 };
  }

  async function newBatch(z, label) {
    batch = null;                                   // clicks wait until the batch is drawn
    picked = [];
    clearInterval(walkTimer);
    $("player").hidden = true;
    $("walk").replaceChildren();
    $("hint").textContent = "Click two samples to walk from one to the other.";
    const n = z.length / G.zDim;
    $("grid").style.gridTemplateColumns = `repeat(${Math.ceil(Math.sqrt(n))}, auto)`;
    const done = await render(z, $("grid"), (canvas, i) => {
      canvas.title = `sample ${i + 1}`;
      canvas.addEventListener("click", () => pick(i, canvas));
    });
    if (!done) return;
    batch = { z, images: done.images, label };
    status(`${n} samples (${label}) in ${done.seconds.toFixed(2)} s`);
    document.body.dataset.state = "ready";
  }

  function pick(i, canvas) {
    if (!batch) return;
    if (picked.length === 2) {
      picked = [];
      for (const c of $("grid").children) c.classList.remove("picked");
    }
    picked.push(i);
    canvas.classList.add("picked");
    if (picked.length === 2) walk(picked[0], picked[1]);
    else $("hint").textContent = `Sample ${i + 1} picked: click another.`;
  }

  // The great-circle walk from sample i to sample j (minigan interpolate's slerp).
  async function walk(i, j) {
    const a = batch.z.subarray(i * G.zDim, (i + 1) * G.zDim);
    const b = batch.z.subarray(j * G.zDim, (j + 1) * G.zDim);
    const z = new Float32Array(walkSteps * G.zDim);
    for (let s = 0; s < walkSteps; s++)
      z.set(MiniganGenerator.slerp(a, b, s / (walkSteps - 1)), s * G.zDim);
    $("hint").textContent = `Walk from sample ${i + 1} to sample ${j + 1}:`;
    const done = await render(z, $("walk"));
    if (!done) return;
    animate(done.images);
    status(`walk of ${walkSteps} steps in ${done.seconds.toFixed(2)} s`);
    document.body.dataset.state = "ready";
  }

  function animate(images) {
    const player = $("player"), order = [];
    for (let s = 0; s < images.length; s++) order.push(s);
    for (let s = images.length - 2; s > 0; s--) order.push(s);   // there and back
    player.width = W; player.height = H;
    player.style.width = `${3 * W * scale}px`; player.style.height = `${3 * H * scale}px`;
    player.hidden = false;
    const frames = images.map((im) => new ImageData(MiniganGenerator.toRGBA(im, G.imageShape),
                                                    W, H));
    let k = 0;
    clearInterval(walkTimer);
    walkTimer = setInterval(() => {
      player.getContext("2d").putImageData(frames[order[k++ % order.length]], 0, 0);
    }, 120);
  }

  function seeded(seed) {
    return newBatch(MiniganGenerator.randn(count * G.zDim, seed), `seed ${seed}`);
  }

  function fresh() {
    return seeded(crypto.getRandomValues(new Uint32Array(1))[0]);
  }

  const info = model.metadata || {};
  document.title = `minigan generator: ${info.dataset || info.arch || ""}`;
  $("title").textContent = `New samples from a minigan generator${
    info.dataset ? `: ${info.dataset}` : ""}`;
  $("meta").textContent = [
    info.arch && `arch ${info.arch}`, info.width && `width ${info.width}`,
    info.trained_steps && `${info.trained_steps} training steps`, `noise ${G.zDim}-d`,
    `images ${C}x${H}x${W}`, "drawn here by a plain-JavaScript forward pass",
  ].filter(Boolean).join(" · ");
  $("new").addEventListener("click", fresh);
  window.minigan = { G, batch: () => batch, newBatch, walk, seeded };

  if (hash.has("z")) {
    // base64 or base64url; URLSearchParams turns an unescaped "+" into a space
    const text = hash.get("z").replace(/[ -]/g, "+").replace(/_/g, "/");
    let z = null;
    try { z = MiniganGenerator.decode(text); } catch (e) { z = new Float32Array(0); }
    if (z.length === 0 || z.length % G.zDim) {
      status(`#z must hold n * ${G.zDim} little-endian float32 numbers in base64; ` +
             `it holds ${z.length}`);
      document.body.dataset.state = "error";
    } else {
      count = z.length / G.zDim;
      newBatch(z, "noise from the URL");
    }
  } else if (params.has("seed")) {
    seeded(Number(params.get("seed")));
  } else {
    fresh();
  }
})();
