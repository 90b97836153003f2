#!/usr/bin/env python3
"""PyTorch/transformers reference timings for scripts/gpu-check.sh, on the same card in the
same call as `runner bench generate` / `runner bench train`, so every figure is a ratio
measured side by side.

  generate: a Llama-3.1-8B-shaped LlamaForCausalLM with random weights (bf16), `generate`
            with sampling, a 64-token random prompt and exactly N new tokens, batch 1/16/64.
  train:    one optimiser step with LoRA rank r on all linear projections (peft when it is
            installed, else a plain-torch LoRA written below), AdamW, bf16 base weights and
            f32 adapters, loss on the second half of random sequences, as `runner bench train`.

Writes one JSON object per measurement to --out (JSON lines). `--shape tiny` runs the same
code on a small shape (used to check this script on a CPU).
"""
import argparse
import json
import math
import sys
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {
    # Meta's Llama-3.1-8B config.json.
    "llama-3.1-8b": dict(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-5,
        rope_theta=500000.0, max_position_embeddings=131072, tie_word_embeddings=False,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=8192),
    ),
    "tiny": dict(
        vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
        rope_theta=500000.0, max_position_embeddings=2048, tie_word_embeddings=False,
    ),
}


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def random_model(shape, dtype, dev):
    cfg = LlamaConfig(**SHAPES[shape])
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    model = model.to_empty(device=dev).to(dtype)
    gen = torch.Generator(device=dev).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
    model.eval()
    return model


def bench_generate(model, dev, batches, prompt, new, out):
    vocab = model.config.vocab_size
    for b in batches:
        ids = torch.randint(0, vocab, (b, prompt), device=dev)
        mask = torch.ones_like(ids)
        kw = dict(attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                  max_new_tokens=new, min_new_tokens=new, pad_token_id=0)
        model.generate(ids, **{**kw, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
        sync(dev)
        t0 = time.perf_counter()
        res = model.generate(ids, **kw)
        sync(dev)
        wall = time.perf_counter() - t0
        gen = (res.shape[1] - prompt) * b
        rec = dict(kind="generate", impl="transformers", batch=b, prompt_tokens=prompt,
                   new_tokens=new, generated_tokens_per_s_wall=gen / wall, wall_seconds=wall,
                   decode_step_ms=1e3 * wall / new)
        print(json.dumps(rec), flush=True)
        out.write(json.dumps(rec) + "\n")
        out.flush()


class LoraLinear(torch.nn.Module):
    """y = x W^T + (x A^T B^T) * alpha / r, adapters in f32, cast to the input's type."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.scale = alpha / r
        self.a = torch.nn.Parameter(torch.empty(r, base.in_features, device=base.weight.device))
        self.b = torch.nn.Parameter(torch.zeros(base.out_features, r, device=base.weight.device))
        torch.nn.init.uniform_(self.a, -1 / math.sqrt(base.in_features), 1 / math.sqrt(base.in_features))

    def forward(self, x):
        return self.base(x) + (x @ self.a.t().to(x.dtype)) @ self.b.t().to(x.dtype) * self.scale


def add_lora(model, r, targets):
    names = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "gate": "gate_proj",
             "up": "up_proj", "down": "down_proj"}
    wanted = [names[t] for t in targets]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        import peft

        conf = peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=wanted, lora_dropout=0.0)
        model = peft.get_peft_model(model, conf)
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.data = p.data.float()
        return model, f"peft {peft.__version__}"
    except ImportError:
        for layer in model.model.layers:
            for mod in (layer.self_attn, layer.mlp):
                for n in wanted:
                    if hasattr(mod, n):
                        setattr(mod, n, LoraLinear(getattr(mod, n), r, 2 * r))
        return model, "plain-torch LoRA (peft not installed)"


def bench_train(model, dev, batch, seq, rank, targets, steps, out):
    model, how = add_lora(model, rank, targets)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    vocab = model.config.vocab_size
    half = seq // 2

    def step():
        ids = torch.randint(0, vocab, (batch, seq), device=dev)
        logits = model(input_ids=ids).logits[:, half - 1:-1].float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), ids[:, half:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    step()
    sync(dev)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync(dev)
    per = (time.perf_counter() - t0) / steps
    rec = dict(kind="train", impl=how, batch=batch, seq_len=seq, lora_rank=rank,
               lora_targets=targets, first_step_seconds=first, step_seconds=per,
               tokens_per_s=batch * seq / per, final_loss=loss,
               peak_gpu_mib=(torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None))
    print(json.dumps(rec), flush=True)
    out.write(json.dumps(rec) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="llama-3.1-8b", choices=sorted(SHAPES))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--train-batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--lora-targets", default="q,k,v,o,gate,up,down")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma-separated: generate, train")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    dev = torch.device(a.device)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    torch.manual_seed(0)
    skip = set(filter(None, a.skip.split(",")))
    with open(a.out, "w") as out:
        head = dict(kind="env", torch=torch.__version__, transformers=transformers.__version__,
                    device=(torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"),
                    shape=a.shape, dtype=a.dtype)
        print(json.dumps(head), flush=True)
        out.write(json.dumps(head) + "\n")
        if "generate" not in skip:
            t0 = time.perf_counter()
            model = random_model(a.shape, dtype, dev)
            print(f"model ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            with torch.no_grad():
                bench_generate(model, dev, [int(b) for b in a.batches.split(",")], a.prompt_tokens,
                               a.new_tokens, out)
            del model
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        if "train" not in skip:
            model = random_model(a.shape, dtype, dev)
            bench_train(model, dev, a.train_batch, a.seq_len, a.lora_rank,
                        a.lora_targets.split(","), a.steps, out)


if __name__ == "__main__":
    main()
