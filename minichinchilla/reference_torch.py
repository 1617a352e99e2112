"""The same TransformerLM written in PyTorch, for cross-checks and benchmarks only.

PyTorch is never a runtime dependency: this module imports torch when it is used. The model
is built from our model's state_dict (same names, same XW weight layout), so a test or a
benchmark compares the two implementations on identical weights.
"""
from __future__ import annotations


def torch_model_from(model, device="cpu"):
    """A torch.nn.Module computing exactly what `model` (a TransformerLM) computes."""
    import torch

    F = torch.nn.functional
    cfg = model.config
    if cfg.pos_encoding != "learned" or not cfg.tie_embeddings:
        raise NotImplementedError("the torch reference covers learned positions and tied embeddings")

    class TorchLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.names = list(model.state_dict())
            self.params = torch.nn.ParameterList(
                torch.nn.Parameter(torch.tensor(a, device=device)) for a in model.state_dict().values())

        def forward(self, idx, targets=None):
            P = dict(zip(self.names, self.params))
            B, T = idx.shape
            C, NH = cfg.d_model, cfg.n_heads
            hs = C // NH

            def norm(x, prefix):
                if cfg.norm == "layernorm":
                    return F.layer_norm(x, (C,), P[prefix + ".weight"], P[prefix + ".bias"], eps=1e-5)
                return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6) * P[prefix + ".weight"]

            def ffn(h, prefix):  # h (B*T, C) -> (B*T, C)
                if cfg.activation == "swiglu":  # (silu(h W_g) * h W_u) W_d, no biases
                    gate = F.silu(h @ P[prefix + "gate_weight"])
                    return (gate * (h @ P[prefix + "up_weight"])) @ P[prefix + "down_weight"]
                if cfg.activation == "relu":
                    a = F.relu(torch.addmm(P[prefix + "up_bias"], h, P[prefix + "up_weight"]))
                else:
                    a = F.gelu(torch.addmm(P[prefix + "up_bias"], h, P[prefix + "up_weight"]), approximate="tanh")
                return torch.addmm(P[prefix + "down_bias"], a, P[prefix + "down_weight"])

            x = P["tok_emb.weight"][idx] + P["pos_emb"][:T]
            for i in range(cfg.n_layers):
                pre = f"blocks.{i}."
                qkv = torch.addmm(P[pre + "attn.qkv_bias"], norm(x, pre + "norm1").reshape(B * T, C),
                                  P[pre + "attn.qkv_weight"])
                q, k, v = (t.reshape(B, T, NH, hs).transpose(1, 2) for t in qkv.split(C, dim=-1))
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                y = torch.addmm(P[pre + "attn.proj_bias"], y.transpose(1, 2).reshape(B * T, C),
                                P[pre + "attn.proj_weight"])
                x = x + y.reshape(B, T, C)
                x = x + ffn(norm(x, pre + "norm2").reshape(B * T, C), pre + "ffn.").reshape(B, T, C)
            logits = norm(x, "norm_f") @ P["tok_emb.weight"].T
            loss = None
            if targets is not None:
                loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), targets.reshape(-1),
                                       ignore_index=-100)
            return logits, loss

        def named(self):
            return dict(zip(self.names, self.params))

    return TorchLM()
