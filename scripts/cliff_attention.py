"""The cliff language's gate, watched: train one small model on `make_language("cliff")` and record,
along its loss curve, how much each attention head looks at the previous position
(chapters/10-scaling-laws.md, "A gate makes a cliff"; notebook 10 reads the output).

The previous-token score of a head is the mean attention weight P[t, t−1] over positions t ≥ 1 of
held-out windows: 1 for a head that only reads the previous token, about 1/(t+1) for one that
spreads its attention evenly. Writes results/cliff-attention.json:

    python scripts/cliff_attention.py [--tokens 3e6]
"""
import argparse
import json
import math
import sys
import time

import numpy as np

from minichinchilla.model import ModelConfig, TransformerLM
from minichinchilla.optim import AdamW, clip_grad_norm, cosine_lr, param_groups_for_decay
from minichinchilla.scaling.synthetic import make_language
from minichinchilla.tensor import no_grad

OUT = "results/cliff-attention.json"


def previous_token_scores(model, x):
    """(n_layers, n_heads) mean attention weight on the previous position, over positions t ≥ 1."""
    maps = model.attention_maps(x)  # n_layers × (B, NH, T, T)
    T = x.shape[1]
    t = np.arange(1, T)
    return [[float(m[:, h, t, t - 1].mean()) for h in range(m.shape[1])] for m in maps]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=float, default=3e6)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--points", type=int, default=24, help="evaluations along the run")
    args = p.parse_args(argv)
    lang = make_language("cliff")
    T, B = 32, 32
    cfg = ModelConfig(vocab_size=64, seq_len=T, d_model=48, n_layers=2, n_heads=4, pos_encoding="rope")
    model = TransformerLM(cfg, seed=0)
    params = model.parameters()
    opt = AdamW(param_groups_for_decay(model, 0.1), lr=args.lr, betas=(0.9, 0.95))
    val = lang.sample_streams(512, T + 1, np.random.default_rng(12345))
    x_val, y_val = val[:, :-1], val[:, 1:]
    steps = int(args.tokens // (B * T))
    warmup = max(1, steps // 20)
    at = sorted({int(round(steps * (i + 1) / args.points)) for i in range(args.points)})
    data = lang.batches(B, T, np.random.default_rng(1000))
    curve, t0 = [], time.perf_counter()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, args.lr, warmup)
        x, y = next(data)
        _, loss = model(x, y)
        model.zero_grad()
        loss.backward()
        clip_grad_norm(params, 1.0)
        opt.step()
        if step + 1 in at:
            with no_grad():
                val_loss = float(model(x_val, y_val)[1].item())
            curve.append(dict(tokens=(step + 1) * B * T, loss=val_loss,
                              prev_token=previous_token_scores(model, x_val[:128])))
            print(f"{(step + 1) * B * T / 1e6:5.2f}M tokens  loss {val_loss:.4f}  "
                  f"max previous-token score {max(max(l) for l in curve[-1]['prev_token']):.3f}", flush=True)
    ladder = lang.entropy_ladder()
    out = dict(config=cfg.to_dict(), lr=args.lr, batch=B, tokens=steps * B * T, curve=curve,
               order1=ladder["order1"], floor=lang.eval_floor(T), seconds=time.perf_counter() - t0,
               uniform_prev_score=float(np.mean(1.0 / (np.arange(1, T) + 1))))
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    return 0 if all(math.isfinite(c["loss"]) for c in curve) else 1


if __name__ == "__main__":
    sys.exit(main())
