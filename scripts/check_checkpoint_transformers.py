"""A project checkpoint loads in Hugging Face transformers and gives our logits.

Usage (from the repo root, after `cargo build --release`; needs `pip install torch transformers`):
    python3 scripts/check_checkpoint_transformers.py CHECKPOINT_DIR [TEXT]

Runs `runner score --logits-out` on the text, loads the folder with
AutoModelForCausalLM.from_pretrained (float32, CPU: the class config.json names, LlamaForCausalLM,
Qwen2ForCausalLM or Qwen3ForCausalLM), feeds it the same token ids and prints the max absolute
logit difference; exits non-zero above 1e-4.
"""
import json
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM

ckpt = sys.argv[1]
text = sys.argv[2] if len(sys.argv) > 2 else "Ann has 7 apples. She buys 3 more. How many apples does Ann have now?\n\n7 + 3 = 10\n\nThe final answer is 10."
with tempfile.NamedTemporaryFile(suffix=".json") as f:
    subprocess.run(["target/release/runner", "score", "--model", ckpt, "--text", text, "--logits-out", f.name],
                   check=True, stdout=subprocess.DEVNULL)
    ours = json.load(open(f.name))
model = AutoModelForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float32).eval()
ids = torch.tensor([ours["input_ids"]])
with torch.no_grad():
    theirs = model(input_ids=ids).logits[0]
diff = (theirs - torch.tensor(ours["logits"])).abs().max().item()
print(f"{ckpt}: {ids.shape[1]} tokens, vocab {theirs.shape[1]}, max |logit difference| = {diff:.3e}")
sys.exit(0 if diff < 1e-4 else 1)
