// A minigan generator's forward pass in plain JavaScript, over the weights in weights.js.
// One sample at a time, float64 arithmetic over float32 weights; layouts as PyTorch's:
// activations (C, H, W), Linear weight (out, in), Conv2d (C_out, C_in, kH, kW),
// ConvTranspose2d (C_in, C_out, kH, kW). BatchNorm uses the exported (calibrated) statistics.
"use strict";

const MiniganGenerator = (function () {
  function decode(base64) {
    const bin = atob(base64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Float32Array(bytes.buffer);                  // little-endian float32
  }

  function linear(x, L, p) {
    const nIn = L.in_shape[0], nOut = L.out_shape[0], w = p.weight, b = p.bias;
    const y = new Float64Array(nOut);
    for (let j = 0; j < nOut; j++) {
      let s = b ? b[j] : 0;
      const row = j * nIn;
      for (let i = 0; i < nIn; i++) s += w[row + i] * x[i];
      y[j] = s;
    }
    return y;
  }

  function conv2d(x, L, p) {
    const [ci, hi, wi] = L.in_shape, [co, ho, wo] = L.out_shape;
    const [kh, kw] = L.kernel_size, [sh, sw] = L.stride, [ph, pw] = L.padding;
    const w = p.weight, y = new Float64Array(co * ho * wo);
    for (let o = 0; o < co; o++) {
      const bias = p.bias ? p.bias[o] : 0;
      for (let oy = 0; oy < ho; oy++) {
        for (let ox = 0; ox < wo; ox++) {
          let s = bias;
          for (let c = 0; c < ci; c++) {
            for (let ky = 0; ky < kh; ky++) {
              const iy = oy * sh - ph + ky;
              if (iy < 0 || iy >= hi) continue;
              for (let kx = 0; kx < kw; kx++) {
                const ix = ox * sw - pw + kx;
                if (ix < 0 || ix >= wi) continue;
                s += x[(c * hi + iy) * wi + ix] * w[((o * ci + c) * kh + ky) * kw + kx];
              }
            }
          }
          y[(o * ho + oy) * wo + ox] = s;
        }
      }
    }
    return y;
  }

  // Every input pixel scatters its kernel into the output (the adjoint of conv2d).
  function convTranspose2d(x, L, p) {
    const [ci, hi, wi] = L.in_shape, [co, ho, wo] = L.out_shape;
    const [kh, kw] = L.kernel_size, [sh, sw] = L.stride, [ph, pw] = L.padding;
    const w = p.weight, y = new Float64Array(co * ho * wo);
    for (let c = 0; c < ci; c++) {
      for (let o = 0; o < co; o++) {
        for (let ky = 0; ky < kh; ky++) {
          for (let kx = 0; kx < kw; kx++) {
            const k = w[((c * co + o) * kh + ky) * kw + kx];
            for (let iy = 0; iy < hi; iy++) {
              const oy = iy * sh - ph + ky;
              if (oy < 0 || oy >= ho) continue;
              const xrow = (c * hi + iy) * wi, yrow = (o * ho + oy) * wo;
              for (let ix = 0; ix < wi; ix++) {
                const ox = ix * sw - pw + kx;
                if (ox >= 0 && ox < wo) y[yrow + ox] += x[xrow + ix] * k;
              }
            }
          }
        }
      }
    }
    if (p.bias) {
      const plane = ho * wo;
      for (let o = 0; o < co; o++) for (let i = 0; i < plane; i++) y[o * plane + i] += p.bias[o];
    }
    return y;
  }

  function batchNorm(x, L, p) {
    const c = L.in_shape[0], plane = x.length / c, y = new Float64Array(x.length);
    for (let k = 0; k < c; k++) {
      const scale = (p.weight ? p.weight[k] : 1) / Math.sqrt(p.running_var[k] + L.eps);
      const mean = p.running_mean[k], shift = p.bias ? p.bias[k] : 0;
      for (let i = k * plane; i < (k + 1) * plane; i++) y[i] = (x[i] - mean) * scale + shift;
    }
    return y;
  }

  function upsample(x, L) {
    const [c, hi, wi] = L.in_shape, s = L.scale_factor, ho = hi * s, wo = wi * s;
    const y = new Float64Array(c * ho * wo);
    for (let k = 0; k < c; k++)
      for (let oy = 0; oy < ho; oy++)
        for (let ox = 0; ox < wo; ox++)
          y[(k * ho + oy) * wo + ox] = x[(k * hi + Math.floor(oy / s)) * wi + Math.floor(ox / s)];
    return y;
  }

  const pointwise = {
    leaky_relu: (v, L) => (v >= 0 ? v : v * L.negative_slope),
    relu: (v) => (v > 0 ? v : 0),
    tanh: (v) => Math.tanh(v),
    sigmoid: (v) => 1 / (1 + Math.exp(-v)),
  };

  const layers = {
    linear, conv2d, conv_transpose2d: convTranspose2d, batch_norm: batchNorm, upsample,
    reshape: (x) => x,                       // one flat array per sample: shapes are bookkeeping
  };

  class Generator {
    constructor(model) {
      const data = decode(model.data);
      this.zDim = model.z_dim;
      this.imageShape = model.layers[model.layers.length - 1].out_shape;   // [C, H, W]
      this.layers = model.layers.map((L) => {
        const p = {};
        for (const [key, [offset, length]] of Object.entries(L.arrays))
          p[key] = data.subarray(offset, offset + length);
        if (!(L.kind in layers || L.kind in pointwise))
          throw new Error(`weights.js names a layer kind this page cannot run: ${L.kind}`);
        return { L, p };
      });
    }

    // One image (C*H*W values, tanh range) from one noise vector of zDim values.
    forward(z) {
      let x = Float64Array.from(z);
      for (const { L, p } of this.layers) {
        if (L.kind in pointwise) {
          const f = pointwise[L.kind];
          for (let i = 0; i < x.length; i++) x[i] = f(x[i], L);
        } else {
          x = layers[L.kind](x, L, p);
        }
      }
      return x;
    }
  }

  // Seeded standard-normal noise: mulberry32 uniforms through Box-Muller, stored as float32.
  function randn(count, seed) {
    let a = seed >>> 0;
    const uniform = () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;   // in (0, 1)
    };
    const out = new Float32Array(count);
    for (let i = 0; i < count; i += 2) {
      const r = Math.sqrt(-2 * Math.log(uniform())), th = 2 * Math.PI * uniform();
      out[i] = r * Math.cos(th);
      if (i + 1 < count) out[i + 1] = r * Math.sin(th);
    }
    return out;
  }

  // Spherical interpolation, as minigan.gan.slerp: the great circle from a to b.
  function slerp(a, b, t) {
    let na = 0, nb = 0, dot = 0;
    for (let i = 0; i < a.length; i++) {
      na += a[i] * a[i]; nb += b[i] * b[i]; dot += a[i] * b[i];
    }
    na = Math.sqrt(na); nb = Math.sqrt(nb);
    const omega = Math.acos(Math.min(1, Math.max(-1, dot / (na * nb)))), so = Math.sin(omega);
    const safe = so > 1e-6;
    const wa = safe ? Math.sin((1 - t) * omega) / so : 1 - t;
    const wb = safe ? Math.sin(t * omega) / so : t;
    const out = new Float32Array(a.length);
    for (let i = 0; i < a.length; i++) out[i] = wa * a[i] + wb * b[i];
    return out;
  }

  // uint8 RGBA pixels of one image, as minigan.gan.to_uint8 rounds them.
  function toRGBA(image, shape) {
    const [c, h, w] = shape, plane = h * w, rgba = new Uint8ClampedArray(4 * plane);
    const byte = (v) => Math.round(Math.min(255, Math.max(0, (v + 1) * 127.5)));
    for (let i = 0; i < plane; i++) {
      for (let k = 0; k < 3; k++) rgba[4 * i + k] = byte(image[(c === 3 ? k : 0) * plane + i]);
      rgba[4 * i + 3] = 255;
    }
    return rgba;
  }

  return { Generator, randn, slerp, toRGBA, decode };
})();
