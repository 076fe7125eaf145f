#!/usr/bin/env python3
"""Writes tiny, valid seed inputs for the fuzzers into OUT/<target>/ (standard library only).

scripts/fuzz.sh adds the repository's test fixtures and the shared test models' small files on
top of these; nothing here is copied from elsewhere, so the seeds stay small and reproducible.
"""
import json
import os
import struct
import sys


def write(out, target, name, data):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, vtype, payload):
    return gguf_string(key) + struct.pack("<I", vtype) + payload


def gguf_file(kvs, tensors):
    """tensors: (name, dims (GGUF order), ggml type, raw bytes)."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs)
    offset, infos, blobs = 0, b"", b""
    for name, dims, ttype, raw in tensors:
        infos += gguf_string(name) + struct.pack("<I", len(dims))
        infos += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ttype, offset)
        pad = (-len(raw)) % 32
        blobs += raw + b"\0" * pad
        offset += len(raw) + pad
    header = head + infos
    header += b"\0" * ((-len(header)) % 32)
    return header + blobs


def str_array(items):
    return struct.pack("<IQ", 8, len(items)) + b"".join(gguf_string(s) for s in items)


def f32_array(items):
    return struct.pack("<IQ", 6, len(items)) + b"".join(struct.pack("<f", v) for v in items)


def i32_array(items):
    return struct.pack("<IQ", 5, len(items)) + b"".join(struct.pack("<i", v) for v in items)


def main(out):
    u32 = lambda v: struct.pack("<I", v)
    f32 = lambda v: struct.pack("<f", v)
    # GGUF: a tiny llama with a 6-token SentencePiece vocabulary and one F32 tensor.
    vocab = ["<unk>", "<s>", "</s>", "\u2581a", "a", "<0x0A>"]
    kvs = [
        gguf_kv("general.architecture", 8, gguf_string("llama")),
        gguf_kv("llama.embedding_length", 4, u32(8)),
        gguf_kv("llama.block_count", 4, u32(1)),
        gguf_kv("llama.attention.head_count", 4, u32(2)),
        gguf_kv("llama.feed_forward_length", 4, u32(16)),
        gguf_kv("llama.context_length", 4, u32(32)),
        gguf_kv("llama.attention.layer_norm_rms_epsilon", 6, f32(1e-5)),
        gguf_kv("tokenizer.ggml.model", 8, gguf_string("llama")),
        gguf_kv("tokenizer.ggml.tokens", 9, str_array(vocab)),
        gguf_kv("tokenizer.ggml.scores", 9, f32_array([0, 0, 0, -1, -2, 0])),
        gguf_kv("tokenizer.ggml.token_type", 9, i32_array([2, 3, 3, 1, 1, 6])),
        gguf_kv("tokenizer.ggml.bos_token_id", 4, u32(1)),
        gguf_kv("squish.version", 4, u32(1)),
        gguf_kv("squish.tool", 8, gguf_string("squish")),
    ]
    emb = b"".join(f32(i * 0.01) for i in range(6 * 8))
    write(out, "gguf_fuzz", "tiny_llama.gguf", gguf_file(kvs, [("token_embd.weight", [8, 6], 0, emb)]))
    bpe_kvs = [
        gguf_kv("general.architecture", 8, gguf_string("qwen2")),
        gguf_kv("tokenizer.ggml.model", 8, gguf_string("gpt2")),
        gguf_kv("tokenizer.ggml.pre", 8, gguf_string("qwen2")),
        gguf_kv("tokenizer.ggml.tokens", 9, str_array(["a", "b", "ab", "\u0120", "<|endoftext|>"])),
        gguf_kv("tokenizer.ggml.merges", 9, str_array(["a b"])),
        gguf_kv("tokenizer.ggml.token_type", 9, i32_array([1, 1, 1, 1, 3])),
    ]
    write(out, "gguf_fuzz", "tiny_bpe.gguf", gguf_file(bpe_kvs, []))
    manifest_kvs = [
        gguf_kv("squish.manifest.version", 4, u32(1)),
        gguf_kv("squish.tool.name", 8, gguf_string("squish")),
        gguf_kv("squish.tool.version", 8, gguf_string("0.1.0")),
        gguf_kv("squish.source.files", 8, gguf_string('[{"name": "a", "bytes": 1}]')),
        gguf_kv("squish.method.command", 8, gguf_string("quantize")),
        gguf_kv("squish.method.type", 8, gguf_string("Q4_K_M")),
    ]
    write(out, "manifest_fuzz", "tiny_manifest.gguf",
          gguf_file(manifest_kvs, [("token_embd.weight", [8, 6], 0, emb)]))
    # imatrix, GGUF form: one weight with 4 columns; and the legacy .dat form.
    im_kvs = [
        gguf_kv("general.type", 8, gguf_string("imatrix")),
        gguf_kv("imatrix.datasets", 9, str_array(["calib.txt"])),
        gguf_kv("imatrix.chunk_count", 4, u32(2)),
        gguf_kv("imatrix.chunk_size", 4, u32(64)),
    ]
    sums = b"".join(f32(v) for v in [1, 2, 3, 4])
    write(out, "imatrix_fuzz", "tiny.imatrix.gguf", gguf_file(im_kvs, [
        ("blk.0.attn_q.weight.in_sum2", [4, 1], 0, sums),
        ("blk.0.attn_q.weight.counts", [1, 1], 0, f32(128))]))
    name = b"blk.0.attn_q.weight"
    legacy = struct.pack("<ii", 1, len(name)) + name + struct.pack("<ii", 10, 4) + sums
    legacy += struct.pack("<ii", 2, 9) + b"calib.txt"
    write(out, "imatrix_fuzz", "tiny.imatrix.dat", legacy)
    # safetensors: two tensors and metadata.
    header = {"__metadata__": {"format": "pt"},
              "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
              "b": {"dtype": "F16", "shape": [4], "data_offsets": [16, 24]}}
    hb = json.dumps(header).encode()
    hb += b" " * ((-len(hb)) % 8)
    write(out, "safetensors_fuzz", "tiny.safetensors", struct.pack("<Q", len(hb)) + hb + bytes(24))
    # llama2.c legacy: dim 8, hidden 16, 1 layer, 2 heads, 2 kv heads, vocab 4, seq 4 (shared).
    dim, hidden, layers, heads, kv, vocab_n, seq = 8, 16, 1, 2, 2, 4, 4
    head_size = dim // heads
    n_floats = (vocab_n * dim + layers * dim + layers * dim * dim * 2 + layers * dim * kv * head_size * 2
                + layers * dim + layers * hidden * dim * 3 + dim + seq * head_size)
    write(out, "llama2c_fuzz", "tiny_legacy.bin",
          struct.pack("<7i", dim, hidden, layers, heads, kv, vocab_n, seq) + bytes(4 * n_floats))
    ak42 = struct.pack("<Ii7iB", 0x616B3432, 1, dim, hidden, layers, heads, kv, vocab_n, seq, 1)
    ak42 += bytes(256 - len(ak42))
    write(out, "llama2c_fuzz", "tiny_v1.bin", ak42 + bytes(4 * (n_floats - seq * head_size)))
    # .squishkl: vocab 4, top-2, 1 tail sample, 1 record (p = .5, .25 kept; tail .25).
    import math
    top_k, samples, id_bytes = 2, 1, 2
    record_bytes = 8 + (top_k + samples) * (id_bytes + 4)
    hdr = b"SQUISHKL" + struct.pack("<IIIIIIIIQQQQQII", 1, 88, 4, 8, top_k, id_bytes, 1, 0,
                                    1, 10, 0, 0, record_bytes, samples, 0)
    rec = struct.pack("<ff", math.log(0.25), 0.25) + struct.pack("<HH", 0, 1)
    rec += struct.pack("<ff", math.log(0.5), math.log(0.25)) + struct.pack("<H", 2)
    rec += struct.pack("<f", math.log(0.125))
    write(out, "saved_base_fuzz", "tiny.squishkl", hdr + rec)
    # Text.
    write(out, "text_fuzz", "ascii.txt", "The quick brown fox.\n")
    write(out, "text_fuzz", "utf8.txt", "caf\u00e9 \u2581 \U0001F600 \u4e2d\u6587\n")
    write(out, "tokenize_fuzz", "mixed.txt", "Hello <s> world's 123\n caf\u00e9 \U0001F600  ")
    # tokenizer.json: a minimal byte-level BPE (GPT-2 style pipeline).
    tok = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": 5, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": True}],
           "normalizer": None,
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": "\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+|\\s+"},
                "behavior": "Isolated", "invert": False},
               {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
           "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                              "use_regex": True},
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                     "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3, "\u0120ab": 4},
                     "merges": ["a b", "\u0120 ab"]}}
    write(out, "tokenizer_json_fuzz", "tiny_byte_level.json", json.dumps(tok))
    # Manifest sidecar.
    manifest = {"version": 1, "tool": "squish", "tool_version": "0.1.0", "created": "2025-01-31T12:00:00Z",
                "source": {"path": "m", "format": "safetensors", "files": [{"name": "a", "bytes": 1}]},
                "method": {"command": "quantize", "type": "Q4_K_M"},
                "output": {"file": "m.gguf", "bytes": 10, "tensors": [
                    {"name": "a", "type": "Q4_K", "shape": [2, 256], "bytes": 288}]},
                "quality": {}}
    write(out, "manifest_fuzz", "tiny.manifest.json", json.dumps(manifest))


if __name__ == "__main__":
    main(sys.argv[1])
