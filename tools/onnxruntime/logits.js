#!/usr/bin/env node
// Runs a decoder exported by `squish export --format onnx` in ONNX Runtime (npm onnxruntime-node,
// CPU) the way onnxruntime-genai drives it: the first `--prefill` tokens in one call, then the
// rest one at a time, feeding present.* back as past_key_values.*. Writes the logits of every
// token (float32, [tokens][vocab], little-endian) to OUT, or with --bench N times N decode steps.
//   node logits.js DIR IDS OUT [--prefill N] [--threads T]
//   node logits.js DIR IDS - --bench N [--threads T]          (prints "decode_tok_s=...")
// IDS: comma-separated token ids. The model's shapes come from DIR/genai_config.json.
'use strict';
const fs = require('fs');
const path = require('path');

function loadOrt() {
  const where = process.env.SQUISH_ORT_NODE_MODULES;
  try {
    return require(where ? path.join(where, 'onnxruntime-node') : 'onnxruntime-node');
  } catch (e) {
    console.error(`onnxruntime-node not found (${e.message}); set SQUISH_ORT_NODE_MODULES`);
    process.exit(2);
  }
}

function parseArgs(argv) {
  const a = {prefill: 0, threads: 1, bench: 0, positional: []};
  for (let i = 0; i < argv.length; ++i) {
    if (argv[i] === '--prefill') a.prefill = parseInt(argv[++i], 10);
    else if (argv[i] === '--threads') a.threads = parseInt(argv[++i], 10);
    else if (argv[i] === '--bench') a.bench = parseInt(argv[++i], 10);
    else a.positional.push(argv[i]);
  }
  if (a.positional.length !== 3) {
    console.error('usage: node logits.js DIR IDS OUT [--prefill N] [--threads T] [--bench N]');
    process.exit(2);
  }
  return a;
}

async function main() {
  const ort = loadOrt();
  const args = parseArgs(process.argv.slice(2));
  const [dir, idsText, out] = args.positional;
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'genai_config.json'), 'utf8')).model;
  const dec = cfg.decoder;
  const ids = idsText.split(',').map((s) => BigInt(parseInt(s, 10)));
  const session = await ort.InferenceSession.create(path.join(dir, dec.filename), {
    intraOpNumThreads: args.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const kvDims = (len) => [1, dec.num_key_value_heads, len, dec.head_size];
  let past = {};
  for (let l = 0; l < dec.num_hidden_layers; ++l) {
    for (const kv of ['key', 'value']) {
      past[`past_key_values.${l}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), kvDims(0));
    }
  }
  let nPast = 0;
  async function step(tokens) {
    const n = tokens.length;
    const feeds = Object.assign({}, past);
    feeds.input_ids = new ort.Tensor('int64', BigInt64Array.from(tokens), [1, n]);
    feeds.position_ids = new ort.Tensor(
        'int64', BigInt64Array.from({length: n}, (_, i) => BigInt(nPast + i)), [1, n]);
    feeds.attention_mask =
        new ort.Tensor('int64', new BigInt64Array(nPast + n).fill(1n), [1, nPast + n]);
    const res = await session.run(feeds);
    past = {};
    for (let l = 0; l < dec.num_hidden_layers; ++l) {
      for (const kv of ['key', 'value']) {
        past[`past_key_values.${l}.${kv}`] = res[`present.${l}.${kv}`];
      }
    }
    nPast += n;
    return res.logits.data;
  }
  const prefill = args.prefill > 0 ? Math.min(args.prefill, ids.length) : ids.length;
  if (args.bench > 0) {
    await step(ids.slice(0, prefill));
    // Greedy decoding, as a generation loop would run it (argmax included in the time).
    let tok = ids[prefill - 1];
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < args.bench; ++i) {
      const logits = await step([tok]);
      let best = 0;
      for (let v = 1; v < logits.length; ++v) if (logits[v] > logits[best]) best = v;
      tok = BigInt(best);
    }
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(`decode_tok_s=${(args.bench / s).toFixed(2)} steps=${args.bench} seconds=${s.toFixed(3)}`);
    return;
  }
  const chunks = [await step(ids.slice(0, prefill))];
  for (let i = prefill; i < ids.length; ++i) chunks.push(await step([ids[i]]));
  const total = chunks.reduce((s, c) => s + c.length, 0);
  const all = new Float32Array(total);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  fs.writeFileSync(out, Buffer.from(all.buffer));
}

main().catch((e) => {
  console.error(`onnxruntime: ${e.message}`);
  process.exit(1);
});
