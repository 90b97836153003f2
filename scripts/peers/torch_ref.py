#!/usr/bin/env python3
"""CPU reference timings in PyTorch / transformers for scripts/bench-peers.sh.

Every measurement builds a LlamaForCausalLM (Qwen2/Qwen3ForCausalLM for those families) of
exactly the shape `runner bench` used: the shape
comes from the `config` object of a runner bench JSON file (`--like FILE`), so the two sides can
never drift apart. Weights are random (speed does not depend on their values).

  generate  transformers `generate`, sampling (T = 1, top-p 1, top-k off), exactly N new tokens
  loop      a hand-written decode loop over the same model: one forward per token with the KV
            cache, softmax and torch.multinomial per step
  train     one optimiser step like `runner bench train`: AdamW, global-norm clip 1, loss on the
            second half of random sequences; --objective nll (full fine-tuning or LoRA) or kl
            (eq. 2 of the paper: weighted NLL + beta * exact KL to a frozen copy, whose forward runs
            under no_grad); LoRA is the hand-written one of scripts/gpu_reference.py
            (y = xW^T + x A^T B^T * alpha / r, never peft)

Prints one JSON object (and appends it to --out when given).
"""
import argparse
import json
import os
import sys
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from gpu_reference import LoraLinear  # noqa: E402  (the same hand-written LoRA as the GPU check)


def build(cfg_json):
    c = dict(cfg_json)
    kind = c.get("model_type") or "llama"
    for k in ("architectures", "model_type", "bos_token_id", "eos_token_id", "torch_dtype",
              "rope_parameters"):
        c.pop(k, None)
    if c.get("rope_scaling") is None:
        c.pop("rope_scaling", None)
    # The model class of the runner's family (Qwen2: q/k/v biases; Qwen3: q/k norms).
    if kind == "qwen2":
        from transformers import Qwen2Config as Config, Qwen2ForCausalLM as Model
    elif kind == "qwen3":
        from transformers import Qwen3Config as Config, Qwen3ForCausalLM as Model
    else:
        Config, Model = LlamaConfig, LlamaForCausalLM
    cfg = Config(**c)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = Model(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
    return model


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def bench_generate(model, batch, prompt, new, reps):
    vocab = model.config.vocab_size
    model.eval()
    ids = torch.randint(0, vocab, (batch, prompt))
    kw = dict(attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_p=1.0,
              top_k=0, pad_token_id=0)
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, **kw)  # warm-up
        walls, firsts = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
            firsts.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            res = model.generate(ids, max_new_tokens=new, min_new_tokens=new, **kw)
            walls.append(time.perf_counter() - t0)
    assert res.shape[1] == prompt + new, res.shape
    wall, first = median(walls), median(firsts)
    # decode: the new tokens after the first, over the time after the prefill + first token
    return dict(wall_seconds=wall, prefill_seconds=first,
                decode_tokens_per_s=batch * (new - 1) / max(wall - first, 1e-9),
                generated_tokens_per_s_wall=batch * new / wall)


def bench_loop(model, batch, prompt, new, reps):
    vocab = model.config.vocab_size
    model.eval()
    ids = torch.randint(0, vocab, (batch, prompt))

    def run(n):
        out = model(input_ids=ids, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1]
        t_first = time.perf_counter()
        for _ in range(n - 1):
            tok = torch.multinomial(torch.softmax(logits.float(), -1), 1)
            out = model(input_ids=tok, past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[:, -1]
        return t_first

    with torch.no_grad():
        run(2)
        walls, decs = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            t_first = run(new)
            t1 = time.perf_counter()
            walls.append(t1 - t0)
            decs.append(t1 - t_first)
    wall, dec = median(walls), median(decs)
    return dict(wall_seconds=wall, decode_tokens_per_s=batch * (new - 1) / dec,
                generated_tokens_per_s_wall=batch * new / wall)


def add_lora(model, r, targets):
    names = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "gate": "gate_proj",
             "up": "up_proj", "down": "down_proj"}
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.model.layers:
        for mod in (layer.self_attn, layer.mlp):
            for t in targets:
                n = names[t]
                if hasattr(mod, n):
                    setattr(mod, n, LoraLinear(getattr(mod, n), r, 2 * r))
    return model


def bench_train(model, batch, seq, rank, targets, objective, beta, steps):
    import copy

    ref = None
    if objective == "kl":
        ref = copy.deepcopy(model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
    if rank > 0:
        model = add_lora(model, rank, targets)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    vocab = model.config.vocab_size
    half = seq // 2
    gen = torch.Generator().manual_seed(0)

    def step():
        ids = torch.randint(0, vocab, (batch, seq), generator=gen)
        tgt = ids[:, half:]
        logits = model(input_ids=ids).logits[:, half - 1:-1]
        lp = torch.log_softmax(logits, -1)
        tok = lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)  # [b, t]
        if objective == "nll":
            loss = -tok.mean()
        else:
            with torch.no_grad():
                lq = torch.log_softmax(ref(input_ids=ids).logits[:, half - 1:-1], -1)
            kl = (lp.exp() * (lp - lq)).sum(-1)  # [b, t]
            w = torch.ones(batch)
            loss = (-w * tok.sum(-1) + beta * kl.sum(-1)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    step()  # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    per = median(times)
    return dict(step_seconds=per, tokens_per_s=batch * seq / per, final_loss=loss,
                trainable=sum(p.numel() for p in params))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["generate", "loop", "train"])
    ap.add_argument("--like", required=True, help="a runner bench JSON file (its 'config' is the shape)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--lora-rank", type=int, default=0)
    ap.add_argument("--lora-targets", default="q,k,v,o")
    ap.add_argument("--objective", default="nll", choices=["nll", "kl"])
    ap.add_argument("--beta", type=float, default=0.05)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "2")))
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    like = json.load(open(a.like))
    model = build(like["config"])
    if a.mode == "generate":
        rec = bench_generate(model, a.batch, a.prompt_tokens, a.new_tokens, a.reps)
    elif a.mode == "loop":
        rec = bench_loop(model, a.batch, a.prompt_tokens, a.new_tokens, a.reps)
    else:
        rec = bench_train(model, a.batch, a.seq_len, a.lora_rank, a.lora_targets.split(","),
                          a.objective, a.beta, a.steps)
    rec = dict(impl=f"torch {torch.__version__} / transformers {transformers.__version__}",
               mode=a.mode, batch=a.batch, threads=a.threads, **rec)
    if a.mode == "train":
        rec.update(seq_len=a.seq_len, lora_rank=a.lora_rank, objective=a.objective)
    else:
        rec.update(prompt_tokens=a.prompt_tokens, new_tokens=a.new_tokens)
    print(json.dumps(rec), flush=True)
    if a.out:
        with open(a.out, "a") as f:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
