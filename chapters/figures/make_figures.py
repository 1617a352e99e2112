"""Draw the figures of chapters 01-05 into this folder (PNG, deterministic).

Usage (from the repository root):  python chapters/figures/make_figures.py [name ...]
With no names it draws every figure. Each figure is a function below; the diagrams are boxes and
arrows drawn with matplotlib, and the plots are computed with the package itself (the attention maps
come from a small model trained here, on the period-4 task of notebook 04, in about ten seconds).
Run it again after changing a figure and commit the PNGs it rewrites.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent
DPI = 110
SEED = 0
# Colours: values (white), operations (blue), gradients (orange), norms (green), residual stream (grey).
OP, VALUE, GRAD, NORM, STREAM = "#dbe8f6", "#ffffff", "#fde3c8", "#dff0d8", "#888888"


def save(fig, name):
    """Write `name`.png beside this script; no timestamps or versions, so reruns give the same bytes."""
    path = HERE / f"{name}.png"
    fig.savefig(path, dpi=DPI, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)
    return path


def box(ax, x, y, text, w=1.5, h=0.6, color=VALUE, fontsize=9, lw=1.0):
    """A rounded box centred at (x, y)."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=color, ec="black", lw=lw))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def arrow(ax, start, end, color="black", style="-|>", lw=1.2, ls="-", rad=0.0):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=11, color=color, lw=lw,
                                 ls=ls, connectionstyle=f"arc3,rad={rad}", shrinkA=0, shrinkB=0))


def canvas(width, height, xlim, ylim):
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


# ------------------------------------------------------------------------------------------ ch01
def graph_01():
    """The two-layer network of chapter 01: forward on top, backward (VJPs, eq. 1.2) below."""
    fig, ax = canvas(10.0, 3.9, (-0.3, 18.3), (-1.9, 4.9))
    y_f, y_b, w = 3.4, 0.6, 1.7
    xv = {"x": 0.8, "h": 5.4, "a": 10.0, "z": 14.6}  # value boxes
    xo = {"W1": 3.1, "relu": 7.7, "W2": 12.3}  # operation boxes
    ax.text(-0.2, 4.45, "forward: values and their shapes", fontsize=9, weight="bold")
    ax.text(-0.2, 1.35, "backward: gradients, each the shape of its value", fontsize=9, weight="bold",
            color="#c05000")
    for name, x in xv.items():
        box(ax, x, y_f, f"{name} {dict(x='(4, 3)', h='(4, 5)', a='(4, 5)', z='(4, 2)')[name]}", w=w)
    for (name, x), text in zip(xo.items(), ("matmul W1", "relu", "matmul W2")):
        box(ax, x, y_f, text, w=w + 0.2, color=OP, fontsize=8)
    box(ax, 17.2, y_f, "loss ℓ", w=1.2, color=OP)
    chain = [xv["x"], xo["W1"], xv["h"], xo["relu"], xv["a"], xo["W2"], xv["z"], 17.2]
    for a, b in zip(chain[:-1], chain[1:]):
        arrow(ax, (a + w / 2 + 0.1, y_f), (b - (0.6 if b == 17.2 else w / 2 + 0.1), y_f))
    for name, x in xv.items():
        box(ax, x, y_b, f"d{name}", w=w, color=GRAD)
    box(ax, 17.2, y_b, "dℓ = 1", w=1.2, color=GRAD)
    back = [(17.2, xv["z"], ""), (xv["z"], xv["a"], "dz W2ᵀ"), (xv["a"], xv["h"], "da ⊙ [h > 0]"),
            (xv["h"], xv["x"], "dh W1ᵀ")]
    for a, b, label in back:
        arrow(ax, (a - (0.6 if a == 17.2 else w / 2), y_b), (b + w / 2, y_b), color="#c05000")
        if label:
            ax.text((a + b) / 2, y_b - 0.55, label, ha="center", fontsize=8, color="#c05000")
    for x, text, src in ((xo["W1"], "dW1 = xᵀ dh", xv["h"]), (xo["W2"], "dW2 = aᵀ dz", xv["z"])):
        box(ax, x, y_b - 1.5, text, w=2.1, h=0.55, color=GRAD, fontsize=8)
        arrow(ax, (src - 0.5, y_b - 0.3), (x + 0.8, y_b - 1.2), color="#c05000", rad=-0.25)
    for x in xo.values():  # each backward step reads what its forward step cached
        arrow(ax, (x, y_f - 0.3), (x, y_b + 0.05), color="#7a9cc6", style="-", ls=":", lw=1.0)
    ax.text(xo["relu"] + 0.15, 2.25, "dotted: the cache each backward step reads", fontsize=8, color="#4a6c96")
    return save(fig, "01-graph")


# ------------------------------------------------------------------------------------------ ch02
def softmax_ce_02():
    """Logits -> probabilities -> loss and the fused gradient (p - onehot)/N, on a real example."""
    from minichinchilla.functional import cross_entropy_backward, cross_entropy_forward, softmax_forward

    rng = np.random.default_rng(SEED)
    N, V = 4, 8
    Z = rng.standard_normal((N, V)) * 1.5  # (N, V) logits
    t = np.array([2, 5, 0, 7])  # (N,) targets
    P = softmax_forward(Z)[0]  # (N, V)
    loss, cache = cross_entropy_forward(Z, t)
    dZ = cross_entropy_backward(np.ones(()), cache)  # (N, V) = (P - onehot) / N
    onehot = np.eye(V)[t]
    panels = [(Z, "logits Z  (N, V)", "RdBu_r", None), (P, "P = softmax(Z)  (N, V)\neq. 2.1", "Blues", (0, 1)),
              (onehot, "one-hot targets  (N, V)", "Greys", (0, 1)),
              (dZ, "dZ = (P − onehot) / N  (N, V)\neq. 2.7", "RdBu_r", None)]
    fig, axes = plt.subplots(1, 4, figsize=(10.5, 2.6))
    for ax, (A, title, cmap, lim) in zip(axes, panels):
        if lim is None:
            m = np.abs(A).max()
            lim = (-m, m)
        ax.imshow(A, cmap=cmap, vmin=lim[0], vmax=lim[1])
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(V))
        ax.set_yticks(range(N))
        ax.set_xlabel("vocabulary entry v", fontsize=8)
        ax.tick_params(labelsize=7)
        for n in range(N):
            ax.add_patch(plt.Rectangle((t[n] - 0.5, n - 0.5), 1, 1, fill=False, ec="#e07000", lw=1.5))
    axes[0].set_ylabel("row n (one position)", fontsize=8)
    fig.suptitle(f"cross-entropy (eq. 2.6) = mean over rows of −log P[n, target] = {float(loss):.3f}   "
                 "(orange squares: the targets)", fontsize=9, y=1.02)
    fig.tight_layout()
    return save(fig, "02-softmax-ce")


# ------------------------------------------------------------------------------------------ ch03
def masks_03():
    """Causal mask, padding mask, and both together (eq. 3.3): which scores become -inf."""
    T = 6
    causal = np.triu(np.ones((T, T), dtype=bool), k=1)  # (T, T) True = masked
    pad = np.zeros(T, dtype=bool)
    pad[:2] = True  # a left-padded sequence: its first two tokens are padding
    padding = np.broadcast_to(pad[None, :], (T, T))
    both = causal | padding
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.0))
    cmap = matplotlib.colors.ListedColormap(["#4c8bc9", "#eeeeee"])
    for ax, M, title in ((axes[0], causal, "causal: key s > query t"),
                         (axes[1], padding, "padding: keys 0, 1 are padding"),
                         (axes[2], both, "both (what attention uses)")):
        ax.imshow(M, cmap=cmap, vmin=0, vmax=1)
        for q in range(T):
            for k in range(T):
                ax.text(k, q, "−∞" if M[q, k] else "0", ha="center", va="center", fontsize=7,
                        color="#777777" if M[q, k] else "white")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key s", fontsize=8)
        ax.set_xticks(range(T))
        ax.set_yticks(range(T))
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("query t", fontsize=8)
    axes[2].text(T - 0.5, T + 0.9, "rows 0 and 1: every key masked", fontsize=7, ha="right", color="#a03030")
    fig.tight_layout()
    return save(fig, "03-masks")


def period_batch(rng, B, T, V=16, period=4):
    """Sequences that repeat a random pattern of `period` tokens (notebook 04's task)."""
    pattern = rng.integers(0, V, (B, period))  # (B, period)
    seq = np.tile(pattern, (1, (T + 1) // period + 1))[:, :T + 1]  # (B, T + 1)
    return seq[:, :-1], seq[:, 1:]


def train_period_model(steps=150):
    """A 2-layer, 2-head model trained on the period-4 task; returns it and its last losses."""
    from minichinchilla.model import ModelConfig, TransformerLM
    from minichinchilla.optim import AdamW

    cfg = ModelConfig(vocab_size=16, seq_len=16, d_model=32, n_layers=2, n_heads=2, kernels="reference")
    model = TransformerLM(cfg, seed=SEED)
    opt = AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    data = np.random.default_rng(SEED)
    losses = []
    for _ in range(steps):
        xb, yb = period_batch(data, 16, cfg.seq_len)
        _, loss = model(xb, yb)
        model.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, losses


def period_rule_mass(P, period=4):
    """Mean weight, over queries t >= period, on the keys that hold the next token (t - 3, t - 7, ...).

    P: (T, T) one head's attention weights on a period-4 sequence.
    """
    T = P.shape[-1]
    t, s = np.arange(T)[:, None], np.arange(T)[None, :]
    fetch = (s < t) & ((t - s) % period == period - 1)  # (T, T) the copies of the next token
    return float((P * fetch).sum(-1)[period:].mean())


def attention_maps_03():
    """Every head of a trained model on one sequence (TransformerLM.attention_maps)."""
    model, losses = train_period_model()
    xb, _ = period_batch(np.random.default_rng(123), 1, 16)
    maps = model.attention_maps(xb)  # n_layers arrays of (1, NH, T, T)
    L, NH = len(maps), maps[0].shape[1]
    fig, axes = plt.subplots(1, L * NH, figsize=(2.6 * L * NH, 2.9))
    for l in range(L):
        for h in range(NH):
            ax = axes[l * NH + h]
            ax.imshow(maps[l][0, h], cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"layer {l + 1}, head {h + 1}", fontsize=9)
            ax.set_xlabel("key s", fontsize=8)
            ax.tick_params(labelsize=6)
    axes[0].set_ylabel("query t", fontsize=8)
    tokens = " ".join(str(v) for v in xb[0, :8])
    fig.suptitle(f"attention weights P after training (loss {np.mean(losses[-10:]):.2f} nats; "
                 f"input {tokens} …, period 4)", fontsize=9, y=1.03)
    fig.tight_layout()
    return save(fig, "03-attention-maps")


# ------------------------------------------------------------------------------------------ ch04
def residual_stream_04():
    """The residual stream: each sublayer reads a normalised copy and adds its output back (eq. 4.11)."""
    fig, ax = canvas(7.6, 4.0, (-0.5, 12.5), (-0.6, 6.0))
    y = 2.6
    arrow(ax, (0.0, y), (12.0, y), color=STREAM, lw=6, style="-|>")
    ax.text(0.0, y + 0.45, "residual stream x  (B, T, d)", fontsize=9, color="#444444")
    subs = [(2.6, "Attn"), (6.2, "FFN"), (9.8, "…")]
    for x, name in subs:
        if name == "…":
            ax.text(x, y + 1.8, "… L blocks", fontsize=9, ha="center")
            continue
        box(ax, x - 0.7, y + 1.7, "Norm", w=1.1, h=0.55, color=NORM)
        box(ax, x + 0.7, y + 1.7, name, w=1.1, h=0.55, color=OP)
        arrow(ax, (x - 1.4, y + 0.1), (x - 1.1, y + 1.4), rad=-0.2)  # read
        arrow(ax, (x - 0.15, y + 1.7), (x + 0.15, y + 1.7))
        arrow(ax, (x + 1.1, y + 1.4), (x + 1.35, y + 0.25), rad=-0.2)  # write back
        ax.add_patch(plt.Circle((x + 1.4, y), 0.22, fc="white", ec="black", zorder=3))
        ax.text(x + 1.4, y, "+", ha="center", va="center", fontsize=11, zorder=4)
    # the gradient highway
    arrow(ax, (12.0, y - 1.3), (0.0, y - 1.3), color="#c05000", lw=2)
    ax.text(6.0, y - 1.05, "backward: the + passes the upstream gradient on unchanged (eq. 4.11),",
            fontsize=8, ha="center", color="#c05000")
    ax.text(6.0, y - 1.85, "so every layer receives it, plus each sublayer's own contribution",
            fontsize=8, ha="center", color="#c05000")
    return save(fig, "04-residual-stream")


def pre_post_norm_04():
    """Post-norm (original Transformer) against pre-norm (GPT-2, Chinchilla; eq. 4.12)."""
    fig, axes = plt.subplots(1, 2, figsize=(7.4, 5.2))
    for ax in axes:
        ax.set_xlim(-2.2, 2.8)
        ax.set_ylim(-1.5, 9.4)
        ax.set_aspect("equal")
        ax.axis("off")

    def skip(ax, y0, y1, x0):
        """The residual connection: from (x0, y0) on the stream, right, up, into the + at y1."""
        ax.plot([x0, 1.9, 1.9], [y0, y0, y1], color=STREAM, lw=1.6)
        arrow(ax, (1.9, y1), (0.3, y1), color=STREAM, lw=1.6)

    def column(ax, items, title):
        ax.set_title(title, fontsize=10)
        ys = np.linspace(0.0, 8.6, len(items))
        for (kind, text), yy in zip(items, ys):
            if kind == "+":
                ax.add_patch(plt.Circle((0, yy), 0.28, fc="white", ec="black"))
                ax.text(0, yy, "+", ha="center", va="center", fontsize=12)
            else:
                box(ax, 0, yy, text, w=2.2, h=0.62, color={"v": VALUE, "op": OP, "norm": NORM}[kind])
        for a, b in zip(ys[:-1], ys[1:]):
            arrow(ax, (0, a + 0.32), (0, b - 0.32))
        return ys

    post = [("v", "x"), ("op", "Attn"), ("+", ""), ("norm", "Norm"), ("op", "FFN"), ("+", ""),
            ("norm", "Norm"), ("v", "y")]
    pre = [("v", "x"), ("norm", "Norm₁"), ("op", "Attn"), ("+", ""), ("norm", "Norm₂"), ("op", "FFN"),
           ("+", ""), ("v", "y")]
    ys = column(axes[0], post, "post-norm (2017)")
    skip(axes[0], ys[0], ys[2], 1.1)  # from x into the first +
    skip(axes[0], (ys[3] + ys[4]) / 2, ys[5], 0.0)  # from AFTER the norm: the norm sits on the stream
    axes[0].text(-2.1, -1.4, "the norm sits on the stream:\ngradients pass through every norm", fontsize=8)
    ys = column(axes[1], pre, "pre-norm (eq. 4.12)")
    skip(axes[1], ys[0], ys[3], 1.1)  # from x, past Norm1 and Attn
    skip(axes[1], ys[3], ys[6], 0.28)  # from the +, past Norm2 and FFN: the norms sit beside the stream
    axes[1].text(-2.1, -1.4, "the stream bypasses the norms:\nan identity path from y to x", fontsize=8)
    fig.tight_layout()
    return save(fig, "04-pre-post-norm")


# ------------------------------------------------------------------------------------------ ch05
def decoder_stack_05():
    """The decoder-only transformer, bottom to top, with the shape of every array (eqs. 5.1-5.3)."""
    fig, ax = canvas(6.6, 7.4, (-3.6, 5.4), (-0.6, 10.2))
    rows = [
        (0.0, "token ids", "(B, T)", VALUE),
        (1.4, "embedding: E[x_t] + P[t]   (eq. 5.1)", "(B, T, d)", OP),
        (3.3, "L blocks, each  a = x + Attn(Norm₁ x),\n y = a + FFN(Norm₂ a)   (eq. 4.12)", "(B, T, d)", OP),
        (5.2, "final Norm", "(B, T, d)", NORM),
        (6.6, "logits Z = H Eᵀ, tied   (eq. 5.3)", "(B, T, V)", OP),
        (8.0, "softmax + cross-entropy vs next tokens", "scalar loss", GRAD),
    ]
    for y, text, shape, color in rows:
        box(ax, 0.0, y, text, w=6.4, h=0.7 if y != 3.3 else 1.2, color=color, fontsize=8.5)
        ax.text(3.45, y, shape, fontsize=8.5, va="center", family="monospace")
    for a, b in zip([r[0] for r in rows[:-1]], [r[0] for r in rows[1:]]):
        da = 0.6 if a == 3.3 else 0.35
        db = 0.6 if b == 3.3 else 0.35
        arrow(ax, (0, a + da), (0, b - db))
    # the tied embedding is read twice
    arrow(ax, (-3.45, 1.4), (-3.45, 6.6), color="#c05000", style="<|-|>", ls="--", rad=0.0)
    ax.text(-3.5, 9.0, "E (V, d) is used twice (input rows, output logits):\n"
            "its gradient is the sum of both uses (eq. 1.3)", fontsize=8, color="#c05000")
    ax.text(-3.5, -0.55, "B sequences of T tokens, width d, vocabulary V", fontsize=8, color="#444444")
    return save(fig, "05-decoder-stack")


FIGURES = {"01-graph": graph_01, "02-softmax-ce": softmax_ce_02, "03-masks": masks_03,
           "03-attention-maps": attention_maps_03, "04-residual-stream": residual_stream_04,
           "04-pre-post-norm": pre_post_norm_04, "05-decoder-stack": decoder_stack_05}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"figures to draw (default: all): {', '.join(FIGURES)}")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figure {unknown[0]!r}; choose from {', '.join(FIGURES)}")
    plt.rcParams.update({"font.family": "DejaVu Sans", "svg.hashsalt": "minichinchilla"})
    for name in args.names or FIGURES:
        print(FIGURES[name]().relative_to(HERE.parents[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
