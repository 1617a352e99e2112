"""llm.c's whole-model check: logits, loss, every parameter gradient and 5 AdamW steps vs PyTorch.

The reference model is written here in plain torch ops from the same weights, so a mismatch
points at our code, not at a difference in architecture.
"""
import math

import numpy as np
import pytest

from minichinchilla.gradcheck import rel_error
from minichinchilla.model import ModelConfig, TransformerLM
from minichinchilla.optim import AdamW, param_groups_for_decay

pytestmark = pytest.mark.torch


def torch_forward(torch, P, cfg, idx, targets):
    F = torch.nn.functional
    B, T = idx.shape
    C, NH = cfg.d_model, cfg.n_heads
    hs = C // NH

    def norm(x, prefix):
        if cfg.norm == "layernorm":
            return F.layer_norm(x, (C,), P[prefix + ".weight"], P[prefix + ".bias"], eps=1e-5)
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6) * P[prefix + ".weight"]

    x = P["tok_emb.weight"][idx] + P["pos_emb"][:T]
    for i in range(cfg.n_layers):
        pre = f"blocks.{i}."
        h = norm(x, pre + "norm1")
        qkv = h @ P[pre + "attn.qkv"] + P[pre + "attn.qkv_bias"]
        q, k, v = (t.reshape(B, T, NH, hs).transpose(1, 2) for t in qkv.split(C, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(B, T, C) @ P[pre + "attn.proj"] + P[pre + "attn.proj_bias"]
        x = x + y
        h = norm(x, pre + "norm2")
        h = F.gelu(h @ P[pre + "ffn.w1"] + P[pre + "ffn.b1"], approximate="tanh")
        x = x + h @ P[pre + "ffn.w2"] + P[pre + "ffn.b2"]
    logits = norm(x, "norm_f") @ P["tok_emb.weight"].T
    loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), targets.reshape(-1), ignore_index=-100)
    return logits, loss


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-7), ("float32", 1e-4)])
@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_whole_model_matches_pytorch(dtype, tol, norm):
    torch = pytest.importorskip("torch")
    cfg = ModelConfig(vocab_size=37, seq_len=9, d_model=16, n_layers=2, n_heads=4, norm=norm, dtype=dtype)
    model = TransformerLM(cfg, seed=0)
    rng = np.random.default_rng(0)
    for p in model.parameters():  # non-trivial norms and biases, so their gradients are tested too
        if p.ndim == 1:
            p.data = (p.data + 0.1 * rng.standard_normal(p.shape)).astype(dtype)
    idx = rng.integers(0, 37, (3, 9))
    targets = rng.integers(0, 37, (3, 9))
    targets[0, :2] = -100

    P = {n: torch.tensor(p.data.copy(), requires_grad=True) for n, p in model.named_parameters()}
    t_idx, t_tgt = torch.tensor(idx), torch.tensor(targets)
    groups = param_groups_for_decay(model, 0.1)
    ours = AdamW(groups, lr=1e-2)
    name_of = {id(p): n for n, p in model.named_parameters()}
    theirs = torch.optim.AdamW([{"params": [P[name_of[id(p)]] for p in g["params"]],
                                 "weight_decay": g["weight_decay"]} for g in groups], lr=1e-2)
    for step in range(6):
        logits, loss = model(idx, targets)
        model.zero_grad()
        loss.backward()
        t_logits, t_loss = torch_forward(torch, P, cfg, t_idx, t_tgt)
        theirs.zero_grad()
        t_loss.backward()
        if step == 0:
            assert rel_error(logits.data, t_logits.detach().numpy()) < tol
        assert math.isclose(loss.item(), t_loss.item(), rel_tol=tol)
        for n, p in model.named_parameters():
            err = rel_error(p.grad, P[n].grad.numpy())
            assert err < tol, f"step {step} d{n}: {err:.2e}"
        if step == 5:
            break
        ours.step()
        theirs.step()
    for n, p in model.named_parameters():  # parameters after 5 AdamW steps
        assert rel_error(p.data, P[n].detach().numpy()) < tol, n
