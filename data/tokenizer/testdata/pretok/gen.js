// Generates the pre-tokenizer fixtures in this folder with HF tokenizers (the Rust
// library through its Node binding, tokenizers@0.23.2):
//
//   node gen.js <gpt2 tokenizer.json> <corpus.jsonl>
//   (with NODE_PATH naming a node_modules that holds tokenizers@0.23.2)
//
// Each <name>.tokenizer.json is a small byte-level BPE (GPT-2's first merges) under the
// pre-tokenizer chain, added tokens, post-processor and decoder of a real model's
// tokenizer.json; <name>.expected.jsonl holds HF's ids for every test string.
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const NMERGES = 1500;
const gpt2 = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const corpus = fs.readFileSync(process.argv[3], 'utf8').trim().split('\n').map(JSON.parse).map(r => r.text);

// The 256 byte symbols, then the first NMERGES merges' results, renumbered compactly.
const merges = gpt2.model.merges.slice(0, NMERGES).map(m => Array.isArray(m) ? m.join(' ') : m);
const byId = Object.entries(gpt2.model.vocab).sort((a, b) => a[1] - b[1]).map(e => e[0]);
const vocab = {};
for (const tok of byId.slice(0, 256)) vocab[tok] = Object.keys(vocab).length;
for (const m of merges) {
  const [a, b] = m.split(' ');
  if (!(a in vocab) || !(b in vocab)) throw new Error('merge ' + m + ' uses an unknown token');
  if (!((a + b) in vocab)) vocab[a + b] = Object.keys(vocab).length;
}

const bytelevel = (useRegex) => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: useRegex });
const chains = {
  // tiiuae/falcon-7b
  falcon: {
    specials: ['>>TITLE<<', '>>ABSTRACT<<', '>>INTRODUCTION<<', '>>SUMMARY<<', '>>COMMENT<<', '>>ANSWER<<',
      '>>QUESTION<<', '>>DOMAIN<<', '>>PREFIX<<', '>>SUFFIX<<', '>>MIDDLE<<', '<|endoftext|>'],
    pre: { type: 'Sequence', pretokenizers: [
      { type: 'Punctuation', behavior: 'Contiguous' }, bytelevel(true),
      { type: 'Digits', individual_digits: false },
      { type: 'Split', pattern: { Regex: '[0-9][0-9][0-9]' }, behavior: 'Isolated', invert: false }] },
  },
  // bigcode/starcoder
  starcoder: {
    specials: ['<|endoftext|>', '<fim_prefix>', '<fim_middle>', '<fim_suffix>', '<fim_pad>', '<filename>',
      '<gh_stars>', '<issue_start>', '<issue_comment>', '<issue_closed>', '<jupyter_start>', '<jupyter_text>',
      '<jupyter_code>', '<jupyter_output>', '<empty_output>', '<commit_before>', '<commit_msg>', '<commit_after>',
      '<reponame>'],
    pre: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, bytelevel(true)] },
  },
  // bigscience/bloom
  bloom: {
    specials: ['<unk>', '<s>', '</s>', '<pad>'],
    pre: { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: ' ?[^(\\s|[.,!?…。，、।۔،])]+' }, behavior: 'Isolated', invert: false },
      bytelevel(false)] },
  },
};

// Strings aimed at the chains: digit runs and groups of three, punctuation runs, BLOOM's
// class members, and characters whose UTF-8 holds bytes that read as digits in the
// byte-level alphabet (0xB2 0xB3 0xB9 0xBC 0xBD 0xBE: ² ³ ¹ ¼ ½ ¾).
const hand = [
  '12345678', 'price: $1,234.56 (approx.)', 'v1.2.3-rc4', '0x1F 007 1000000', '½ ¾1 ²³ x¹',
  '佽 佽½ 伽', '\u4f7d\u4f7d12', 'a--b...c!!!d???', '(x)[y]{z}<a>', '"quoted" \'single\'',
  'a.b,c!d?e…f。g，h、i।j۔k،l', ' (x)|y [z] ', 'hello  world\n\n  123 4567',
  'def f(x):\n    return x**2  # 42', '中文，测试。１２３ ٣٤٥ ⅫⅩ', 'emoji 😀👍🏽 12😀34',
  '>>TITLE<< Falcon 180B >>ABSTRACT<<', '<fim_prefix>x = 1<fim_suffix>', '<s>hi</s><pad>',
  '<|endoftext|>12<|endoftext|>', '   ', '\t\t1\t', 'x\u00a0\u3000y 1\u2028 2',
];
let seed = 12345;
const rand = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
const alphabet = ['a', 'Z', 'é', '中', '文', '佽', 'ж', 'ア', '한', '😀', '0', '7', '123', '½', '²', '٣', 'Ⅻ', '１',
  ' ', '  ', '\t', '\n', '\u00a0', '\u3000', '.', ',', '!', '?', '…', '。', '，', '、', '।', '۔', '،', '(', ')', '|',
  '[', ']', '-', '_', '$', '+', '<', '>', '"', "'", '/', '\\', '#', '@', '~', '^', '`', '¿', '¡', '«', '»', '—',
  '<|endoftext|>', '>>TITLE<<', '<s>', '<fim_prefix>'];
const random = [];
for (let k = 0; k < 300; k++) {
  let s = '';
  for (let n = rand(24); n >= 0; n--) s += alphabet[rand(alphabet.length)];
  random.push(s);
}
const texts = [...corpus, ...hand, ...random];

(async () => {
  for (const [name, c] of Object.entries(chains)) {
    const v = { ...vocab };
    const added = c.specials.map(content => {
      const id = Object.keys(v).length;
      v[content] = id;
      return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
    });
    const tj = {
      version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
      pre_tokenizer: c.pre, post_processor: bytelevel(true), decoder: bytelevel(true),
      model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
        end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab: v, merges },
    };
    const file = path.join(__dirname, `${name}.tokenizer.json`);
    fs.writeFileSync(file, JSON.stringify(tj));
    const tok = Tokenizer.fromFile(file);
    const out = [];
    for (const text of texts) {
      const ids = Array.from((await tok.encode(text, null, { addSpecialTokens: false })).getIds());
      out.push(JSON.stringify({ text, ids }));
    }
    fs.writeFileSync(path.join(__dirname, `${name}.expected.jsonl`), out.join('\n') + '\n');
    console.log(name, texts.length, 'strings');
  }
})().catch(e => { console.error(e); process.exit(1); });
