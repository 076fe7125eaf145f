#!/usr/bin/env python3
"""Reference ("golden") outputs for squish, made with Hugging Face transformers + PyTorch.

Independent of the C++ runtime: everything here is computed by transformers' own
modeling code in float32, so the C++ side can be checked against it.

Sub-commands (any combination, run in order given):

  tiny   Build tiny random-weight checkpoints (seeded, float32, safetensors via
         save_pretrained) for several architectures, reload each from disk and
         write <out>/<name>/{config.json, model.safetensors, logits.bin, golden.json}.
  real   For every real model folder found under --in (gcide-llama-16M,
         gcide-qwen2-28M), tokenize the first 200 characters of --text with the
         model's tokenizer.json, take the first 32 tokens and write
         <out>/<model>.logits.bin + <out>/<model>.json.
  ppl    llama.cpp-style perplexity of each real model on the first 400,000
         characters of --text (ctx 512, non-overlapping windows, score second half),
         merged into <out>/gcide-ppl.json.
  verify Recompute every logits file with an independent numpy float64 implementation
         (needs numpy only) and compare; also checks sha256 sums. Point --in at
         shared/models to include the real models.
  sources  Dump the transformers source of the architecture-specific pieces
         (norms, rope init, fused projections) to --sources (for humans; not a fixture).

Example (as run on the GPU machine, from the repo root):

  python3 tools/goldens/make_fixtures.py tiny real ppl \
      --in tools/goldens/_in --text tools/goldens/_in/gcide-valid.txt \
      --out tests/data/fixtures

logits.bin layout: little-endian IEEE float32, row-major [n_tokens, vocab]
(logit of vocab entry v at position t is at float index t*vocab + v).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import time
import traceback
import zlib

import numpy as np

try:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    TV = transformers.__version__
except ImportError:  # the `verify` step needs numpy only
    torch = transformers = AutoModelForCausalLM = None
    TV = "0"
TV_MAJOR = int(TV.split(".")[0])
DTYPE_KW = "dtype" if TV_MAJOR >= 5 else "torch_dtype"

# ---------------------------------------------------------------------------
# common helpers


def log(*a):
    print(*a, flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions():
    v = {
        "transformers": transformers.__version__ if transformers else None,
        "torch": torch.__version__ if torch else None,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    try:
        import safetensors

        v["safetensors"] = safetensors.__version__
    except Exception:
        pass
    try:
        import tokenizers

        v["tokenizers"] = tokenizers.__version__
    except Exception:
        pass
    return v


def strict_fp32():
    """Plain IEEE float32 math everywhere (no TF32)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    for obj in (getattr(torch.backends.cuda, "matmul", None), getattr(torch.backends, "cudnn", None)):
        try:
            if obj is not None and hasattr(obj, "fp32_precision"):
                obj.fp32_precision = "ieee"
        except Exception:
            pass


def write_f32(path, t: torch.Tensor):
    a = t.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False)
    a.tofile(path)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=False)
        f.write("\n")


def full_logits(model, ids):
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=False)
    return out.logits[0].float()


def incremental_logits(model, ids, prefill):
    """Prefill `prefill` tokens, then feed one token at a time through the KV cache."""
    with torch.no_grad():
        out = model(input_ids=ids[:, :prefill], use_cache=True)
        pkv = out.past_key_values
        rows = [out.logits[0].float()]
        for t in range(prefill, ids.shape[1]):
            out = model(input_ids=ids[:, t : t + 1], past_key_values=pkv, use_cache=True)
            pkv = out.past_key_values
            rows.append(out.logits[0].float())
    return torch.cat(rows, 0)


def load_model(path, device="cpu"):
    kw = {DTYPE_KW: torch.float32, "attn_implementation": "eager"}
    m = AutoModelForCausalLM.from_pretrained(path, **kw)
    return m.to(device).eval()


# ---------------------------------------------------------------------------
# tiny random-weight checkpoints

COMMON = dict(
    vocab_size=256,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=256,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=None,
)

# name -> (config class name, rope dict in transformers-5 `rope_parameters` form, extra kwargs, note)
TINY = {
    "llama": (
        "LlamaConfig",
        {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        dict(num_key_value_heads=2, tie_word_embeddings=False, rms_norm_eps=1e-5),
        "Llama-3 style: llama3 rope scaling, GQA 4q/2kv, untied lm_head",
    ),
    "llama_linear": (
        "LlamaConfig",
        {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
        dict(num_key_value_heads=4, tie_word_embeddings=True, rms_norm_eps=1e-5),
        "Llama-2 style: linear rope scaling x2, MHA, tied embeddings",
    ),
    "mistral": (
        "MistralConfig",
        {"rope_type": "default", "rope_theta": 10000.0},
        dict(num_key_value_heads=2, tie_word_embeddings=False, rms_norm_eps=1e-5, sliding_window=None),
        "Mistral: GQA 4q/2kv, no sliding window, untied",
    ),
    "qwen2": (
        "Qwen2Config",
        {"rope_type": "default", "rope_theta": 1000000.0},
        dict(num_key_value_heads=2, tie_word_embeddings=True, rms_norm_eps=1e-6, use_sliding_window=False),
        "Qwen2: q/k/v biases, GQA 4q/2kv, tied",
    ),
    "phi3": (
        "Phi3Config",
        {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 1.0},
        dict(
            num_key_value_heads=2,
            tie_word_embeddings=False,
            rms_norm_eps=1e-5,
            original_max_position_embeddings=256,
            sliding_window=None,
        ),
        "Phi-3: fused qkv_proj and gate_up_proj, GQA 4q/2kv, no rope scaling, untied",
    ),
    "gemma": (
        "GemmaConfig",
        {"rope_type": "default", "rope_theta": 10000.0},
        dict(
            num_key_value_heads=1,
            head_dim=32,
            hidden_act="gelu_pytorch_tanh",
            tie_word_embeddings=True,
            rms_norm_eps=1e-6,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=1,
        ),
        "Gemma-1: head_dim 32 != hidden/heads 16, MQA 4q/1kv, GeGLU (gelu tanh), "
        "tied, embeddings * sqrt(hidden), RMSNorm scale (1+w)",
    ),
    "smollm": (
        "LlamaConfig",
        {"rope_type": "default", "rope_theta": 10000.0},
        dict(num_key_value_heads=2, tie_word_embeddings=True, rms_norm_eps=1e-5),
        "SmolLM-like: llama, GQA 4q/2kv, tie_word_embeddings true, no rope scaling",
    ),
}

N_TOKENS = 24
PREFILL = 12
TOKEN_SEED = 20240601
W_STD = 0.1  # linear + embedding weights
B_STD = 0.1  # biases
NORM_STD = 0.1  # norm weights are 1 + NORM_STD * N(0,1)


def make_config(cls_name, rope, extra):
    cls = getattr(transformers, cls_name)
    kw = dict(COMMON)
    kw.update(extra)
    if cls_name == "GemmaConfig" and TV_MAJOR < 5:
        kw["hidden_activation"] = kw["hidden_act"]  # 4.x Gemma reads hidden_activation
    rope = dict(rope)
    if TV_MAJOR >= 5:
        kw["rope_parameters"] = rope
    else:  # transformers 4.x: rope_theta top level + rope_scaling
        kw["rope_theta"] = rope.pop("rope_theta")
        prf = rope.pop("partial_rotary_factor", None)
        if prf is not None:
            kw["partial_rotary_factor"] = prf
        if rope.get("rope_type", "default") != "default":
            kw["rope_scaling"] = rope
    return cls(**kw)


def tiny_tokens():
    g = torch.Generator().manual_seed(TOKEN_SEED)
    return torch.randint(1, 256, (N_TOKENS,), generator=g)


def init_weights(model, seed):
    g = torch.Generator().manual_seed(seed)
    desc = {}
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if "norm" in name:
            v = 1.0 + NORM_STD * r
            kind = "norm"
        elif name.endswith(".bias"):
            v = B_STD * r
            kind = "bias"
        else:
            v = W_STD * r
            kind = "weight"
        with torch.no_grad():
            p.copy_(v.to(p.dtype))
        desc[name] = [kind, list(p.shape)]
    return desc


def build_tiny(name, out_root):
    cls_name, rope, extra, note = TINY[name]
    seed = zlib.crc32(name.encode()) & 0x7FFFFFFF
    torch.manual_seed(seed)
    cfg = make_config(cls_name, rope, extra)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    model = model.float().eval()
    params = init_weights(model, seed)
    d = os.path.join(out_root, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    model.save_pretrained(d)
    # keep only what the fixture needs
    for f in os.listdir(d):
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(d, f))
    assert os.path.exists(os.path.join(d, "model.safetensors")), os.listdir(d)

    ids = tiny_tokens()[None, :]
    with torch.no_grad():
        mem = full_logits(model, ids)
    # goldens are computed from the checkpoint as re-read from disk
    m2 = load_model(d)
    logits = full_logits(m2, ids)
    reload_diff = (logits - mem).abs().max().item()
    inc = incremental_logits(m2, ids, PREFILL)
    inc_diff = (inc - logits).abs().max().item()
    assert logits.shape == (N_TOKENS, 256), logits.shape
    write_f32(os.path.join(d, "logits.bin"), logits)

    with open(os.path.join(d, "config.json")) as f:
        cfg_json = json.load(f)
    from safetensors import safe_open

    with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
        tensors = {k: [str(f.get_slice(k).get_dtype()), list(f.get_slice(k).get_shape())] for k in f.keys()}

    golden = {
        "name": name,
        "note": note,
        "architecture": type(m2).__name__,
        "model_type": cfg_json.get("model_type"),
        "tokens": ids[0].tolist(),
        "shape": [N_TOKENS, 256],
        "logits_file": "logits.bin",
        "logits_format": "little-endian float32, row-major [n_tokens, vocab]",
        "dtype": "float32",
        "device": "cpu",
        "attn_implementation": getattr(m2.config, "_attn_implementation", "eager"),
        "use_cache": False,
        "max_abs_logit": logits.abs().max().item(),
        "mean_logit": logits.mean().item(),
        "std_logit": logits.std().item(),
        "argmax": logits.argmax(-1).tolist(),
        "logits_first_row_head": logits[0, :8].tolist(),
        "logits_last_row_head": logits[-1, :8].tolist(),
        "self_consistency": {
            "incremental_prefill": PREFILL,
            "incremental_step": 1,
            "max_abs_diff_full_vs_incremental": inc_diff,
            "max_abs_diff_in_memory_vs_reloaded": reload_diff,
        },
        "init": {
            "weight_seed": seed,
            "token_seed": TOKEN_SEED,
            "weights": f"N(0, {W_STD}^2)",
            "biases": f"N(0, {B_STD}^2)",
            "norm_weights": f"1 + {NORM_STD}*N(0,1) (stored value; Gemma applies (1+w))",
            "order": "torch.Generator(seed); params in sorted name order, tied params once",
        },
        "tensors": tensors,
        "rope_config": cfg_json.get("rope_parameters", cfg_json.get("rope_scaling")),
        "versions": versions(),
        "sha256": {
            "model.safetensors": sha256(os.path.join(d, "model.safetensors")),
            "logits.bin": sha256(os.path.join(d, "logits.bin")),
        },
    }
    write_json(os.path.join(d, "golden.json"), golden)
    sz = {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}
    log(f"[tiny] {name}: {type(m2).__name__} max|logit|={golden['max_abs_logit']:.4f} "
        f"inc_diff={inc_diff:.3e} reload_diff={reload_diff:.3e} sizes={sz}")
    log(f"[tiny] {name} config.json: {json.dumps(cfg_json, sort_keys=True)}")


# ---------------------------------------------------------------------------
# real models

REAL_MODELS = ["gcide-llama-16M", "gcide-qwen2-28M"]
REAL_CHARS = 200
REAL_TOKENS = 32


def read_text(path):
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def prepare_real_config(model_dir):
    """transformers < 5 cannot read `rope_parameters`: rewrite the copy to rope_theta/rope_scaling."""
    p = os.path.join(model_dir, "config.json")
    with open(p) as f:
        cfg = json.load(f)
    if TV_MAJOR >= 5 or "rope_parameters" not in cfg:
        return None
    rp = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rp.pop("rope_theta", 10000.0)
    if rp.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = rp
    with open(p, "w") as f:
        json.dump(cfg, f, indent=2)
    return f"rope_parameters converted to rope_theta={cfg['rope_theta']} for transformers {TV}"


def real_dirs(in_dir):
    return [(m, os.path.join(in_dir, m)) for m in REAL_MODELS if os.path.isdir(os.path.join(in_dir, m))]


def do_real(args):
    from tokenizers import Tokenizer

    text = read_text(args.text)
    snippet = text[:REAL_CHARS]
    for name, mdir in real_dirs(args.in_dir):
        conv = prepare_real_config(mdir)
        tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
        ids_all = tok.encode(snippet).ids
        assert len(ids_all) >= REAL_TOKENS, len(ids_all)
        toks = ids_all[:REAL_TOKENS]
        ids = torch.tensor([toks])
        model = load_model(mdir, "cpu")
        vocab = model.config.vocab_size
        logits = full_logits(model, ids)
        inc = incremental_logits(model, ids, REAL_TOKENS // 2)
        inc_diff = (inc - logits).abs().max().item()
        gpu_diff = None
        if torch.cuda.is_available():
            model = model.to("cuda")
            lg = full_logits(model, ids.to("cuda")).cpu()
            gpu_diff = (lg - logits).abs().max().item()
        del model
        assert logits.shape == (REAL_TOKENS, vocab)
        lpath = os.path.join(args.out, f"{name}.logits.bin")
        write_f32(lpath, logits)
        with open(os.path.join(mdir, "config.json")) as f:
            cfgj = json.load(f)
        meta = {
            "model": name,
            "source": f"shared/models/{name} (BF16 safetensors, upcast to float32 at load)",
            "architecture": cfgj.get("architectures"),
            "text_file": "shared/data/gcide-valid.txt",
            "text_snippet": snippet,
            "text_chars": REAL_CHARS,
            "tokenizer": "tokenizers.Tokenizer.from_file(tokenizer.json).encode(snippet) (no BOS added)",
            "n_tokens_in_snippet": len(ids_all),
            "tokens_all": ids_all,
            "tokens": toks,
            "shape": [REAL_TOKENS, vocab],
            "logits_format": "little-endian float32, row-major [n_tokens, vocab]",
            "dtype": "float32 (weights bf16 -> float32)",
            "device": "cpu",
            "attn_implementation": "eager",
            "max_abs_logit": logits.abs().max().item(),
            "argmax": logits.argmax(-1).tolist(),
            "logits_first_row_head": logits[0, :8].tolist(),
            "logits_last_row_head": logits[-1, :8].tolist(),
            "self_consistency": {
                "incremental_prefill": REAL_TOKENS // 2,
                "max_abs_diff_full_vs_incremental": inc_diff,
                "max_abs_diff_cpu_vs_cuda_fp32_no_tf32": gpu_diff,
            },
            "config_conversion": conv,
            "versions": versions(),
            "sha256": {"logits.bin": sha256(lpath)},
        }
        write_json(os.path.join(args.out, f"{name}.json"), meta)
        log(f"[real] {name}: tokens={toks} max|logit|={meta['max_abs_logit']:.4f} "
            f"inc_diff={inc_diff:.3e} cpu_vs_gpu={gpu_diff}")


# ---------------------------------------------------------------------------
# perplexity, llama.cpp method

PPL_CHARS = 400_000
PPL_CTX = 512


def do_ppl(args):
    with torch.no_grad():
        _do_ppl(args)


def _do_ppl(args):
    from tokenizers import Tokenizer

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    text = read_text(args.text)[:PPL_CHARS]
    ppath = os.path.join(args.out, "gcide-ppl.json")
    res = {}
    if os.path.exists(ppath):
        with open(ppath) as f:
            res = json.load(f)
    for name, mdir in real_dirs(args.in_dir):
        t0 = time.time()
        prepare_real_config(mdir)
        tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
        ids = tok.encode(text).ids
        n_ctx = PPL_CTX
        first = n_ctx // 2
        n_win = len(ids) // n_ctx
        model = load_model(mdir, dev)
        all_ids = torch.tensor(ids[: n_win * n_ctx], dtype=torch.long).view(n_win, n_ctx)
        nlls = []
        bs = 16
        for b in range(0, n_win, bs):
            x = all_ids[b : b + bs].to(dev)
            lg = model(input_ids=x, use_cache=False).logits.float()  # [B, n_ctx, V]
            lp = torch.log_softmax(lg[:, first : n_ctx - 1, :], dim=-1)
            tgt = x[:, first + 1 : n_ctx]
            nll = -lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)  # float32 [B, 255]
            nlls.append(nll.cpu())
        nll = torch.cat(nlls, 0).reshape(-1)  # window-major, position order (llama.cpp order)
        n_scored = nll.numel()
        assert n_scored == n_win * (n_ctx - 1 - first)
        a32 = nll.numpy().astype(np.float32)
        # float64 accumulation of float32 NLLs (what llama.cpp does: double nll += -logprob)
        mean64 = float(np.sum(a32.astype(np.float64)) / n_scored)
        # plain sequential float32 accumulation
        acc = np.float32(0.0)
        for v in a32:
            acc = np.float32(acc + v)
        mean32 = float(np.float32(acc / np.float32(n_scored)))
        ppl64 = math.exp(mean64)
        ppl32 = float(np.exp(np.float32(mean32)))
        # per-window ppl of the first few windows, handy for partial checks
        per_win = torch.exp(nll.view(n_win, -1).double().mean(1))[:4].tolist()
        res[name] = {
            "ctx": n_ctx,
            "first": first,
            "n_chars": len(text),
            "n_tokens": len(ids),
            "n_windows": n_win,
            "n_scored": n_scored,
            "scored_per_window": n_ctx - 1 - first,
            "ppl": ppl64,
            "ppl_f64_accum": ppl64,
            "ppl_f32_accum": ppl32,
            "mean_nll_f64": mean64,
            "mean_nll_f32": mean32,
            "ppl_first_windows": per_win,
            "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
            "math": "float32 weights and activations, TF32 off, eager attention, log_softmax in float32",
            "versions": versions(),
        }
        del model
        write_json(ppath, res)
        log(f"[ppl] {name}: tokens={len(ids)} windows={n_win} scored={n_scored} "
            f"ppl64={ppl64:.6f} ppl32={ppl32:.6f} ({time.time()-t0:.1f}s)")


# ---------------------------------------------------------------------------
# independent numpy (float64) re-implementation, used by `verify`
#
# Needs numpy only (no torch/transformers): it reads config.json + safetensors itself
# and recomputes the logits, so it doubles as a compact spec of each architecture.


def np_load_safetensors(path):
    with open(path, "rb") as f:
        b = f.read()
    n = int.from_bytes(b[:8], "little")
    hdr = json.loads(b[8 : 8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        raw = b[8 + n + s : 8 + n + e]
        if v["dtype"] == "F32":
            a = np.frombuffer(raw, "<f4")
        elif v["dtype"] == "BF16":  # bf16 -> f32: put the 16 bits on top
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{k}: dtype {v['dtype']}")
        out[k] = a.reshape(v["shape"]).astype(np.float64)
    return out


def np_inv_freq(cfg, head_dim):
    rp = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    theta = rp.get("rope_theta", cfg.get("rope_theta", 10000.0))
    dim = int(head_dim * rp.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0)))
    inv = 1.0 / theta ** (np.arange(0, dim, 2) / dim)
    kind = rp.get("rope_type", rp.get("type", "default"))
    if kind == "linear":
        inv = inv / rp["factor"]
    elif kind == "llama3":
        f, lo, hi = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"]
        old = rp["original_max_position_embeddings"]
        wl = 2 * math.pi / inv
        scaled = np.where(wl > old / lo, inv / f, inv)
        smooth = (old / wl - lo) / (hi - lo)
        mid = (wl >= old / hi) & (wl <= old / lo)
        inv = np.where(mid, (1 - smooth) * scaled / f + smooth * scaled, scaled)
    elif kind != "default":
        raise ValueError(f"rope type {kind}")
    return inv, dim


def np_rope(x, inv, dim):
    """x [T, heads, head_dim]; HF 'rotate_half' (NeoX) layout: pairs (i, i + dim/2)."""
    ang = np.arange(x.shape[0])[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, -1)[:, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, -1)[:, None, :]
    xr, h = x[..., :dim], dim // 2
    rot = np.concatenate([-xr[..., h:], xr[..., :h]], -1)
    return np.concatenate([xr * cos + rot * sin, x[..., dim:]], -1)


def np_forward(model_dir, tokens):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    W = np_load_safetensors(os.path.join(model_dir, "model.safetensors"))
    mt = cfg["model_type"]
    H, KV, hs = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    hd = cfg.get("head_dim") or hs // H
    eps, gemma = cfg["rms_norm_eps"], mt == "gemma"
    act = cfg.get("hidden_act", "silu")

    def norm(x, w):
        y = x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
        return y * ((1.0 + w) if gemma else w)  # Gemma stores w, scales by (1 + w)

    def activation(g):
        if act == "silu":
            return g / (1 + np.exp(-g))
        if act in ("gelu_pytorch_tanh", "gelu_new"):
            return 0.5 * g * (1 + np.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g**3)))
        raise ValueError(act)

    def lin(x, name):
        y = x @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    T = len(tokens)
    inv, rdim = np_inv_freq(cfg, hd)
    x = W["model.embed_tokens.weight"][np.asarray(tokens)]
    if gemma:
        x = x * math.sqrt(hs)
    causal = np.triu(np.full((T, T), -np.inf), 1)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = norm(x, W[p + "input_layernorm.weight"])
        if mt == "phi3":  # fused [q | k | v] rows
            qkv = lin(h, p + "self_attn.qkv_proj")
            q, k, v = qkv[:, : H * hd], qkv[:, H * hd : (H + KV) * hd], qkv[:, (H + KV) * hd :]
        else:
            q, k, v = (lin(h, p + f"self_attn.{n}_proj") for n in "qkv")
        q = np_rope(q.reshape(T, H, hd), inv, rdim)
        k = np_rope(k.reshape(T, KV, hd), inv, rdim)
        v = v.reshape(T, KV, hd)
        o = np.zeros((T, H, hd))
        for i in range(H):
            j = i // (H // KV)  # query head i uses kv head i // (H/KV)
            s = q[:, i] @ k[:, j].T / math.sqrt(hd) + causal
            s = np.exp(s - s.max(-1, keepdims=True))
            o[:, i] = (s / s.sum(-1, keepdims=True)) @ v[:, j]
        x = x + lin(o.reshape(T, H * hd), p + "self_attn.o_proj")
        h = norm(x, W[p + "post_attention_layernorm.weight"])
        if mt == "phi3":  # fused [gate | up] rows
            gu = lin(h, p + "mlp.gate_up_proj")
            m = activation(gu[:, : gu.shape[1] // 2]) * gu[:, gu.shape[1] // 2 :]
        else:
            m = activation(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj")
        x = x + lin(m, p + "mlp.down_proj")
    x = norm(x, W["model.norm.weight"])
    tied = cfg.get("tie_word_embeddings", False)
    assert ("lm_head.weight" in W) != tied, "lm_head presence does not match tie_word_embeddings"
    return x @ W["model.embed_tokens.weight" if tied else "lm_head.weight"].T


def do_verify(args):
    bad = []

    def check(label, golden_meta, logits_path, model_dir, tol):
        ref = np.fromfile(logits_path, "<f4")
        assert ref.size == golden_meta["shape"][0] * golden_meta["shape"][1], label
        ref = ref.reshape(golden_meta["shape"])
        assert np.isfinite(ref).all(), label
        assert abs(float(np.abs(ref).max()) - golden_meta["max_abs_logit"]) < 1e-6, label
        got = np_forward(model_dir, golden_meta["tokens"])
        d = float(np.abs(got - ref).max())
        ok = d < tol and (got.argmax(-1) == ref.argmax(-1)).all()
        log(f"[verify] {label:16s} numpy-f64 vs logits max|diff| = {d:.3e} {'ok' if ok else 'MISMATCH'}")
        if not ok:
            bad.append(label)

    for name in TINY:
        d = os.path.join(args.out, name)
        if not os.path.isdir(d):
            continue
        with open(os.path.join(d, "golden.json")) as f:
            g = json.load(f)
        for fn, h in g["sha256"].items():
            if sha256(os.path.join(d, fn)) != h:
                bad.append(f"{name}:{fn}:sha256")
        check(name, g, os.path.join(d, "logits.bin"), d, 1e-4)
    for name, mdir in real_dirs(args.in_dir):
        meta_path = os.path.join(args.out, f"{name}.json")
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                g = json.load(f)
            check(name, g, os.path.join(args.out, f"{name}.logits.bin"), mdir, 1e-3)
    if bad:
        raise SystemExit(f"verify failed: {bad}")


# ---------------------------------------------------------------------------
# source dump for humans


def do_sources(args):
    import inspect

    out = []

    def add(title, fn):
        try:
            out.append(f"===== {title}\n{inspect.getsource(fn())}")
        except Exception as e:  # noqa: BLE001
            out.append(f"===== {title}\n<unavailable: {e!r}>")

    from transformers import modeling_rope_utils as R

    add("rope llama3", lambda: R._compute_llama3_parameters)
    add("rope linear", lambda: R._compute_linear_scaling_rope_parameters)
    add("rope default", lambda: getattr(R, "_compute_default_rope_parameters", None)
        or transformers.models.llama.modeling_llama.LlamaRotaryEmbedding.compute_default_rope_parameters)
    import transformers.models.llama.modeling_llama as L
    import transformers.models.gemma.modeling_gemma as G
    import transformers.models.phi3.modeling_phi3 as P
    import transformers.models.qwen2.modeling_qwen2 as Q

    add("llama rotary", lambda: L.LlamaRotaryEmbedding)
    add("llama apply_rotary_pos_emb", lambda: L.apply_rotary_pos_emb)
    add("llama rotate_half", lambda: L.rotate_half)
    add("llama rmsnorm", lambda: L.LlamaRMSNorm)
    add("llama attention", lambda: L.LlamaAttention)
    add("llama eager", lambda: L.eager_attention_forward)
    add("gemma rmsnorm", lambda: G.GemmaRMSNorm)
    add("gemma mlp", lambda: G.GemmaMLP)
    add("gemma model forward", lambda: G.GemmaModel.forward)
    add("gemma causal lm forward", lambda: G.GemmaForCausalLM.forward)
    add("phi3 attention", lambda: P.Phi3Attention)
    add("phi3 mlp", lambda: P.Phi3MLP)
    add("phi3 rotary", lambda: P.Phi3RotaryEmbedding)
    add("qwen2 attention", lambda: Q.Qwen2Attention)
    with open(args.sources, "w") as f:
        f.write("\n".join(out))
    log(f"[sources] wrote {args.sources}")


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("steps", nargs="+", choices=["tiny", "real", "ppl", "sources", "verify"])
    ap.add_argument("--out", default="tests/data/fixtures")
    ap.add_argument("--in", dest="in_dir", default="tools/goldens/_in",
                    help="folder holding copies of gcide-llama-16M / gcide-qwen2-28M")
    ap.add_argument("--text", default="tools/goldens/_in/gcide-valid.txt")
    ap.add_argument("--only", nargs="*", default=None, help="subset of tiny fixture names")
    ap.add_argument("--sources", default="sources.txt")
    ap.add_argument("--keep-going", action="store_true", help="log failures and continue")
    args = ap.parse_args()

    if torch is not None:
        strict_fp32()
        torch.use_deterministic_algorithms(True, warn_only=True)
    os.makedirs(args.out, exist_ok=True)
    log(f"versions: {versions()} cuda={bool(torch and torch.cuda.is_available())}")
    failed = []

    def guarded(label, fn, *a):
        try:
            fn(*a)
        except Exception:
            if not args.keep_going:
                raise
            failed.append(label)
            log(f"!!! {label} failed:\n{traceback.format_exc()}")

    for step in args.steps:
        if step == "tiny":
            for name in args.only or TINY:
                guarded(f"tiny:{name}", build_tiny, name, args.out)
        elif step == "real":
            guarded("real", do_real, args)
        elif step == "ppl":
            guarded("ppl", do_ppl, args)
        elif step == "sources":
            guarded("sources", do_sources, args)
        elif step == "verify":
            guarded("verify", do_verify, args)
    if failed:
        log(f"FAILED: {failed}")
        sys.exit(1)


if __name__ == "__main__":
    main()
