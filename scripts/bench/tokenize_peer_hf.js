// Peer for BenchmarkEncodeQwen3: Hugging Face tokenizers (Rust) through its Node binding,
// npm "tokenizers"@0.23.2, encoding each corpus string as one input (add_special_tokens
// false), repeated to about 5 MB of UTF-8. Two modes: "per-string" awaits encode() for each
// string (dominated by the binding's per-call cost), "batch" passes the whole corpus to
// encodeBatch once per repetition; run it with TOKENIZERS_PARALLELISM=false so the Rust
// side encodes on one thread and the CPU time is that of one core.
// usage: NODE_PATH=<dir with node_modules/tokenizers> node tokenize_peer_hf.js corpus.jsonl tokenizer.json [runs]
// Prints MB per wall second and MB per CPU second (process.cpuUsage, all threads).
const fs = require('fs');
const { Tokenizer } = require('tokenizers');
const corpus = fs.readFileSync(process.argv[2], 'utf8').trim().split('\n').map(l => JSON.parse(l).text);
const runs = Number(process.argv[4] || 3);
const one = corpus.reduce((a, t) => a + Buffer.byteLength(t, 'utf8'), 0);
const reps = Math.ceil(5 * 1024 * 1024 / one), total = one * reps;
(async () => {
  const t = Tokenizer.fromFile(process.argv[3]);
  for (const s of corpus) await t.encode(s, null, { addSpecialTokens: false });
  for (let r = 0; r < runs; r++) {
    let n = 0;
    const c0 = process.cpuUsage(), t0 = process.hrtime.bigint();
    for (let k = 0; k < reps; k++) for (const s of corpus) n += (await t.encode(s, null, { addSpecialTokens: false })).getLength();
    const wall = Number(process.hrtime.bigint() - t0) / 1e9, cu = process.cpuUsage(c0), cpu = (cu.user + cu.system) / 1e6;
    console.log(`hf-tokenizers 0.23.2 (node) per-string run ${r}: ${(total / 1e6 / wall).toFixed(2)} MB/s wall, ${(total / 1e6 / cpu).toFixed(2)} MB/cpu-s, ${n} tokens, ${total} bytes`);
  }
  for (let r = 0; r < runs; r++) {
    let n = 0;
    const c0 = process.cpuUsage(), t0 = process.hrtime.bigint();
    for (let k = 0; k < reps; k++) for (const e of await t.encodeBatch(corpus, { addSpecialTokens: false })) n += e.getLength();
    const wall = Number(process.hrtime.bigint() - t0) / 1e9, cu = process.cpuUsage(c0), cpu = (cu.user + cu.system) / 1e6;
    console.log(`hf-tokenizers 0.23.2 (node) batch TOKENIZERS_PARALLELISM=${process.env.TOKENIZERS_PARALLELISM} run ${r}: ${(total / 1e6 / wall).toFixed(2)} MB/s wall, ${(total / 1e6 / cpu).toFixed(2)} MB/cpu-s, ${n} tokens, ${total} bytes`);
  }
})().catch(e => { console.error(e); process.exit(1); });
