#!/usr/bin/env python3
"""Golden token ids for squish's tokenizer tests, made with Hugging Face `tokenizers` and the
`sentencepiece` Python package (the reference implementations squish must match exactly).

Inputs (--in): the gcide tokenizer.json (byte-level BPE, GPT-2 regex) and, optionally,
gcide-valid.txt for whole-file hashes. These come from ../shared and are never committed: copy
them into an untracked scratch folder for the run, then delete it.

Outputs (--out):
  spm_bpe_tokenizer.json    a tiny Llama-2-style SentencePiece BPE tokenizer.json, trained here
                            with `tokenizers` on TRAIN_TEXT (byte_fallback, Prepend+Replace
                            normalizer, no pre-tokenizer, "a b" string merges like Llama-2's file)
  spm_bpe.model             a tiny SentencePiece BPE .model (byte_fallback, identity normalizer)
  tokenizer_goldens.json    for each tokenizer: the patch applied to its base file, every golden
                            string's ids (special tokens parsed, as `tokenizers` does by default),
                            ids with special tokens treated as text, the decoded text, decode-only
                            cases, ids with the post-processor's additions, and whole-file hashes.

Example (on the GPU machine, from the repo root):

  python3 tools/goldens/tokenizer_goldens.py --in tools/goldens/_in_tok \
      --out tests/data/tokenizer
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import sys

import sentencepiece as spm
import tokenizers
from tokenizers import Tokenizer, pre_tokenizers, trainers

# Original prose (written for this fixture, no license attached) to train the tiny tokenizers on.
TRAIN_TEXT = """\
The old lighthouse keeper climbed the stairs every evening at seven o'clock. There were 132 steps,
and he counted each one, because counting kept his mind from wandering. At the top he trimmed the
wick, polished the lens, and watched the ships pass far out on the grey water.
In winter the wind came from the north and rattled the windows. He didn't mind it; the sound was
like an old friend who talked too much but meant well. His daughter wrote to him twice a month.
Her letters were full of news from the city: the price of bread, the new tram line, the café on
the corner where the owner played the violin after closing time.
"You should come and live with us," she wrote. "It's not healthy to be alone so much."
He always answered the same way. "The light doesn't keep itself. Somebody has to be here."
One night in March a storm rolled in faster than anyone had predicted. The waves were higher than
the harbour wall, and the rain came sideways. He saw a small boat, its sail torn, drifting toward
the rocks. He rang the bell, again and again, until his arms ached. The boat turned, slowly, and
found the channel. In the morning a young fisherman knocked at his door with a basket of fish and
a bottle of wine. "We'd have been lost," the young man said. "We'll never forget it."
The keeper smiled. "That's what the light is for."
Years later, when the lighthouse was automated, they asked him to write down what he remembered.
He wrote about the storms, the ships, the seabirds that nested on the ledge below the lantern room,
the smell of paraffin and salt. He wrote that a lighthouse is a promise made to strangers: whoever
you are, wherever you are going, you will not be left in the dark.
Numbers from the logbook: 1907, 1912, 1923, 1938, 1954, 1969, 1977. Wind speed 45 knots; visibility
0.5 miles; barometer 28.9 inches. Ships counted in 1954: 2,481. Lamps replaced: 17.
Some visitors came from far away. A naturalist from Zürich sketched the puffins. A retired
schoolteacher from Besançon brought a crème brûlée in a tin box, which arrived broken but
delicious. A photographer from São Paulo stayed a week and took pictures of nothing but clouds.
They all signed the guest book, and some of them wrote little notes: "Thank you for the tea!",
"What a view!!", "I'll be back next summer (I promise)."
The keeper's rules were simple. Keep the glass clean. Keep the log honest. Keep the door open for
anyone who needs it. Don't waste oil, don't waste words, and don't ever let the light go out.
When he finally moved to the city, he took only a small suitcase, the logbook, and a jar of sand
from the beach below the cliff. He put the jar on the window sill of his daughter's flat, where
the afternoon sun made it glow, and sometimes, late at night, he would look at it and listen for
the sound of the sea.
"""

PARAGRAPH = (
    "It was a bright cold day in April, and the clocks were striking thirteen? No: it was a quiet "
    "Tuesday, and the dictionary lay open at the letter Q. Quaff, quail, quaint, quake; each word "
    "had its little bracket of etymology, its pronunciation written in a strange alphabet of "
    "accents and dots, and its numbered senses, 1., 2., 3., marching down the column like soldiers. "
    "The reader, who had meant only to check the spelling of \"quay\", found herself an hour later "
    "reading about quaternions (1843), quicksilver (Hg, 80), and the Quakers' meeting-houses - "
    "and wondering, as one does, why English spells /ki:/ with four letters.\n\n"
    "    Indented line with    runs of   spaces,\ttabs\t\tand trailing space \n"
)

GPT2_RE = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
             r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
            r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

GOLDEN_TEXTS = [
    "", " ", "  ", "   ", "\n", "\n\n", "\t", " \t\n ", "a\r\nb", "\u2028line sep",
    "hello", "Hello world", " Hello world", "Hello  world", "Hello   world  ", "hello\nworld",
    "line one\n\nline two\n", "tab\tseparated\tvalues", "  leading", "trailing  ",
    "1234567890", "3.14159", "year 2024 and 12345678 items", "1,000,000",
    "Hello, world! How's it going?", "...!!!???", "(a+b)*c = d/e; x[i] {y}", "#$%^&*_~`|\\",
    "I'm", "you're", "it's", "don't", "we've", "they'll", "she'd", "I'M SHOUTING, DON'T",
    "O'Neil's", "'s 't 're", "café", "naïve façade", "Ångström", "Crème brûlée", "Ελληνικά",
    "Русский текст", "日本語のテキスト", "中文字符", "한국어", "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷",
    "mixed: abc123日本😀é!", "Hello世界", "<|endoftext|>", "text<|endoftext|>more",
    " <|endoftext|> ", "<|endoftext", "<s>", "</s>", "<unk>", "<s>hello</s>", "<0x41>",
    "\u00a0nbsp", "zero\u200bwidth", "\ufeffbom", "e\u0301 combining", "\ufffd replacement",
    "\x00null\x01", "\x7fdel", "ÿþ", "▁already▁marked", "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "<|im_start|>user\nhi<tool_call>{}</tool_call>",
    PARAGRAPH, TRAIN_TEXT[:700],
]


def fnv1a64(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for b in int(i).to_bytes(4, "little"):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def train_spm_bpe_json():
    """Llama-2-style tokenizer.json: <unk> <s> </s>, then <0x00>..<0xFF>, then learned pieces."""
    trainer_tok = Tokenizer(tokenizers.models.BPE())
    # SentencePiece never merges across a word boundary: train on words that start with "▁".
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always",
                                                         split=True)
    trainer = trainers.BpeTrainer(vocab_size=250, min_frequency=2, show_progress=False)
    trainer_tok.train_from_iterator(TRAIN_TEXT.splitlines(), trainer=trainer)
    learned = json.loads(trainer_tok.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(piece, len(vocab))
    merges = [m if isinstance(m, str) else " ".join(m) for m in learned["merges"]]

    def added(i, s):
        return {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True}

    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                  "byte_fallback": True, "ignore_merges": False, "vocab": vocab, "merges": merges},
    }


def train_spm_model():
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TRAIN_TEXT.splitlines()), model_writer=out, model_type="bpe",
        vocab_size=420, byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, character_coverage=1.0,
        hard_vocab_limit=False, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    return out.getvalue()


def byte_level_patches():
    split = lambda rx: {"type": "Split", "pattern": {"Regex": rx}, "behavior": "Isolated",
                        "invert": False}
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": False}
    bos_template = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<|endoftext|>", "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0],
                                             "tokens": ["<|endoftext|>"]}}}
    return {
        # Llama-3's layout: Split(regex) then ByteLevel without its own regex, ignore_merges,
        # and a TemplateProcessing that adds BOS.
        "llama3": {"pre_tokenizer": {"type": "Sequence",
                                     "pretokenizers": [split(LLAMA3_RE), byte_level]},
                   "post_processor": {"type": "Sequence", "processors": [
                       {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                        "use_regex": True}, bos_template]},
                   "model.ignore_merges": True},
        # Qwen2's regex (one digit per token) and its extra added tokens, one of them non-special.
        # (Qwen2's NFC normalizer is left out: see tokenizer.h.)
        "qwen2": {"pre_tokenizer": {"type": "Sequence",
                                    "pretokenizers": [split(QWEN2_RE), byte_level]},
                  "added_tokens+": [
                      {"id": 8192, "content": "<|im_start|>", "single_word": False,
                       "lstrip": False, "rstrip": False, "normalized": False, "special": True},
                      {"id": 8193, "content": "<tool_call>", "single_word": False,
                       "lstrip": False, "rstrip": False, "normalized": False, "special": False}]},
    }


def spm_patches():
    ms = lambda scheme, split: {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme,
                                "split": split}
    return {
        # transformers' LlamaConverter with legacy=False.
        "metaspace_first": {"normalizer": None, "pre_tokenizer": ms("first", False)},
        # Older layout: Metaspace splitting into words, Metaspace decoder.
        "metaspace_split": {"normalizer": None, "pre_tokenizer": ms("always", True),
                            "decoder": ms("always", True)},
    }


def apply_patch(base, patch):
    j = copy.deepcopy(base)
    for key, value in patch.items():
        if key == "added_tokens+":
            j["added_tokens"] = j["added_tokens"] + value
        elif key.startswith("model."):
            j["model"][key[len("model."):]] = value
        else:
            j[key] = value
    return j


def hf_section(name, base_json, patch, texts, decode_ids, whole_text):
    j = apply_patch(base_json, patch)
    tok = Tokenizer.from_str(json.dumps(j))
    plain = Tokenizer.from_str(json.dumps(j))
    plain.encode_special_tokens = True  # special tokens in the text are plain text
    cases = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        cases.append({"text": t, "ids": ids,
                      "ids_no_special": plain.encode(t, add_special_tokens=False).ids,
                      "decoded": tok.decode(ids, skip_special_tokens=False)})
    dec = []
    for ids in decode_ids(tok):
        dec.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    sec = {"name": name, "patch": patch, "cases": cases, "decode_cases": dec,
           "with_special": {"text": "hello world",
                            "ids": tok.encode("hello world", add_special_tokens=True).ids},
           "vocab_size": tok.get_vocab_size(with_added_tokens=True)}
    if whole_text is not None:
        ids = tok.encode(whole_text, add_special_tokens=False).ids
        sec["whole_file"] = {"chars": len(whole_text), "n_ids": len(ids), "fnv1a64": fnv1a64(ids)}
    print(f"{name}: {len(cases)} cases", file=sys.stderr)
    return sec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--in", dest="inp", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    valid = None
    valid_path = os.path.join(args.inp, "gcide-valid.txt")
    if os.path.exists(valid_path):
        with open(valid_path, encoding="utf-8", newline="") as f:  # keep \r\n as is
            valid = f.read()
    with open(os.path.join(args.inp, "tokenizer.json"), encoding="utf-8") as f:
        gcide = json.load(f)

    def gcide_decode_ids(tok):
        jp = tok.encode("日本", add_special_tokens=False).ids
        return [[], [0], [0, 0], jp[:1], jp[:2], jp[1:], jp + [0],
                tok.encode(" café", add_special_tokens=False).ids[::-1]]

    spm_json = train_spm_bpe_json()
    with open(os.path.join(args.out, "spm_bpe_tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(spm_json, f, ensure_ascii=False, separators=(",", ":"))

    def spm_decode_ids(tok):
        v = tok.get_vocab()
        b = lambda x: v[f"<0x{x:02X}>"]
        hello = tok.encode("hello world", add_special_tokens=False).ids
        return [[], [1], [1] + hello, [1, 1], [b(0xE6)], [b(0xE6), b(0x97)],
                [b(0xE6), b(0x97), b(0xA5)], [b(0x41), b(0xE6), b(0x41)], [v["▁"]],
                [v["▁"], v["▁"]], hello + [2], [0, 0], hello[::-1]]

    sections = [hf_section("gcide", gcide, {}, GOLDEN_TEXTS, gcide_decode_ids, valid)]
    for name, patch in byte_level_patches().items():
        sections.append(hf_section("gcide_" + name, gcide, patch, GOLDEN_TEXTS, gcide_decode_ids,
                                   valid))
    spm_text = valid[:100000] if valid is not None else None
    sections.append(hf_section("spm_bpe", spm_json, {}, GOLDEN_TEXTS, spm_decode_ids, spm_text))
    for name, patch in spm_patches().items():
        sections.append(hf_section("spm_bpe_" + name, spm_json, patch, GOLDEN_TEXTS,
                                   spm_decode_ids, spm_text))

    model = train_spm_model()
    with open(os.path.join(args.out, "spm_bpe.model"), "wb") as f:
        f.write(model)
    sp = spm.SentencePieceProcessor(model_proto=model)
    cases = []
    for t in GOLDEN_TEXTS:
        ids = sp.encode(t)
        cases.append({"text": t, "ids": ids, "decoded": sp.decode(ids)})
    byte_id = lambda x: sp.piece_to_id(f"<0x{x:02X}>")
    dec = [[], [1], [byte_id(0xE6)], [byte_id(0xE6), byte_id(0x97), byte_id(0xA5)],
           [byte_id(0x41), byte_id(0xE6), byte_id(0x41)], sp.encode("hello world") + [2]]
    spm_sec = {"name": "spm_model", "cases": cases,
               "decode_cases": [{"ids": d, "decoded": sp.decode(d)} for d in dec],
               "vocab_size": sp.get_piece_size()}
    if spm_text is not None:
        ids = sp.encode(spm_text)
        spm_sec["whole_file"] = {"chars": len(spm_text), "n_ids": len(ids),
                                 "fnv1a64": fnv1a64(ids)}
    sections.append(spm_sec)

    out = {"generator": "tools/goldens/tokenizer_goldens.py",
           "tokenizers_version": tokenizers.__version__,
           "sentencepiece_version": spm.__version__, "sections": sections}
    with open(os.path.join(args.out, "tokenizer_goldens.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, indent=None, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
