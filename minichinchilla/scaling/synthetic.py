"""A synthetic language whose entropy rate — the loss of a perfect model, the E of
L(N, D) = E + A/N^α + B/D^β — is known exactly.

Real text hides its entropy, so a fitted E can never be checked. This source can. It is an
order-2 Markov chain over a vocabulary of V tokens whose next-token distribution is a MIXTURE of
tables that look at the context at different resolutions ("levels"):

    p(x_t | x_{t−2}, x_{t−1}) = Σ_j w_j · T_j[ key_j(x_{t−2}, x_{t−1}) ][ x_t ]

with, by default (the "cliff" language of chapter 10):

    level 0  weight 0.45  key = x_{t−1}                       an order-1 table, V rows
    level 1  weight 0.35  key = (x_{t−1}, group(x_{t−2}))     coarse order-2, V·8 rows
    level 2  weight 0.20  key = (x_{t−1}, x_{t−2})            full order-2, V² rows

Every level below the order-1 entropy of that default needs the token two back, which a
transformer only reaches by learning to attend to the previous position: its loss curves sit on
a plateau, then drop, and a scaling law fitted across the drop breaks (chapter 10 measures it).
The sweep's default is therefore `LANGUAGES["hierarchical"]`, an ORDER-1 coarse-to-fine
mixture: V = 128, each row mixes tables keyed by the previous token seen in 1, 4, 16 and all
128 groups, weights ∝ 1, 1/2, 1/3, 1/4. Every level is read off the previous token, so no
attention circuit gates any of it; the finer rows are rarer and need more parameters and more
tokens, which is what makes the loss fall smoothly with scale.

Why a hierarchy: a small model or a short run can only learn the few, often-seen rows of the
order-1 table; more parameters and more tokens unlock the grouped, then the full order-2 rows,
which are individually rare (each is seen ~1/V² of the time). Each scale of N and D gains a
little, as with real text — a single random order-2 table instead gives plateaus and sudden drops.
Rows are Dirichlet draws around a Zipf-shaped base (a few likely tokens, a long tail), so no row
is uniform and no row is deterministic.

Exactness. The chain's state is the pair s = (x_{t−2}, x_{t−1}); its stationary distribution π
over the V² states is computed by power iteration, and the entropy rate is
(chapters/10-scaling-laws.md, eq. 10.7)

    h = Σ_s π(s) · H( p(· | s) )       nats per token,

which is exactly the expected loss of the best possible predictor with at least 2 tokens of
context. A model evaluated on a window sees less context at its first positions, so the floor
of an evaluation depends on how it is run: `eval_floor(T)` is the exact expected loss of the
true process for the sweep's evaluation (predict tokens 1..T of a (T+1)-token window from their
prefixes, so the first prediction already has one token of context), and `oracle_loss(windows)`
is the true process's loss on a given sample of windows — the number a fitted E is compared with.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SyntheticLanguage", "LANGUAGES", "make_language"]

DEFAULT_LEVELS = ((None, 0), (None, 8), (None, None))  # (groups of x_{t-1}, groups of x_{t-2})
DEFAULT_WEIGHTS = (0.45, 0.35, 0.20)

# The named languages of the scaling sweep (chapters/10-scaling-laws.md).
LANGUAGES = {
    # order-1 coarse-to-fine: the previous token seen in 1 (none), 4, 16 and all 128 groups
    "hierarchical": dict(vocab_size=128, levels=((1, 0), (4, 0), (16, 0), (None, 0)),
                         weights="power"),
    # order-2 with one gate: everything below the order-1 entropy needs the token two back
    "cliff": dict(vocab_size=64, levels=DEFAULT_LEVELS, weights=DEFAULT_WEIGHTS),
}


def _alias_tables(P):
    """Walker/Vose alias tables for every row of P (R, V) at once.

    Returns prob (R, V) float64 and alias (R, V) int64 such that drawing a column k uniformly and
    keeping k with probability prob[r, k], else taking alias[r, k], samples exactly from P[r].
    Each of the V rounds pairs, in every row, one column with less than its 1/V share ("small")
    with one that has more ("large"): the small column is topped up from the large one."""
    R, V = P.shape
    scaled = P * V  # (R, V) share of each column in units of 1/V
    prob = np.ones((R, V))  # (R, V)
    alias = np.tile(np.arange(V), (R, 1))  # (R, V)
    done = np.zeros((R, V), dtype=bool)  # (R, V)
    rows = np.arange(R)
    for _ in range(V):
        small_mask = (scaled < 1.0) & ~done
        large_mask = (scaled >= 1.0) & ~done
        active = small_mask.any(axis=1) & large_mask.any(axis=1)  # (R,)
        if not active.any():
            break
        r = rows[active]
        sm = np.argmax(small_mask[r], axis=1)  # (k,) one small column per row
        lg = np.argmax(large_mask[r], axis=1)  # (k,) one large column per row
        prob[r, sm] = scaled[r, sm]
        alias[r, sm] = lg
        done[r, sm] = True
        scaled[r, lg] -= 1.0 - scaled[r, sm]  # the large column gives up what the small lacked
    # leftovers (exactly 1 up to rounding) keep themselves with probability 1
    return prob, alias


class SyntheticLanguage:
    """An order-2 hierarchical-mixture Markov source with an exactly computable entropy rate.

    Inputs:
        vocab_size: V (≥ 2).
        seed: seeds the tables (the language); sampling takes its own `rng`.
        levels: sequence of (g1, g2): how finely each level sees x_{t−1} and x_{t−2}: None = the
            token itself, an int g = one of g groups (nested: groups of 4 are unions of groups of
            16), 0 = not at all. Default ((None, 0), (None, 8), (None, None)).
        weights: mixture weights, one per level, summing to 1 (default 0.45, 0.35, 0.20); or
            `weights="power"` for w_j ∝ (j+1)^(−power_exponent).
        concentration: Dirichlet concentration of each row around its Zipf base; small → sparse,
            peaky rows (lower entropy), large → rows close to the base.
        zipf_exponent: base measure ∝ rank^(−zipf_exponent) over a random permutation per row.
    """

    def __init__(self, vocab_size=64, seed=0, levels=DEFAULT_LEVELS, weights=DEFAULT_WEIGHTS,
                 concentration=0.09, zipf_exponent=1.0, power_exponent=1.0):
        if isinstance(vocab_size, bool) or int(vocab_size) != vocab_size or vocab_size < 2:
            raise ValueError(f"vocab_size must be an integer ≥ 2, got {vocab_size!r}")
        V = self.vocab_size = int(vocab_size)
        levels = tuple(tuple(lv) for lv in levels)
        if not levels or any(len(lv) != 2 for lv in levels):
            raise ValueError(f"levels must be a non-empty sequence of (g1, g2) pairs, got {levels!r}")
        if isinstance(weights, str):
            if weights != "power":
                raise ValueError(f"weights must be a sequence or 'power', got {weights!r}")
            weights = (np.arange(1, len(levels) + 1, dtype=np.float64) ** -float(power_exponent))
            weights = weights / weights.sum()
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (len(levels),) or np.any(weights < 0) or not np.isclose(weights.sum(), 1):
            raise ValueError(f"weights must be {len(levels)} non-negative numbers summing to 1, "
                             f"got {weights!r}")
        if not concentration > 0:
            raise ValueError(f"concentration must be positive, got {concentration!r}")
        self.levels, self.weights, self.seed = levels, weights, seed
        self.concentration, self.zipf_exponent = float(concentration), float(zipf_exponent)

        rng = np.random.default_rng(seed)
        rank = rng.permutation(V)  # (V,) a random order of tokens; groups are blocks of it

        def group_of(g):  # token → group id, (V,)
            if g is None:
                return np.arange(V)
            if g == 0:
                return np.zeros(V, dtype=np.int64)
            if not 1 <= g <= V:
                raise ValueError(f"a level's group count must be None, 0 or in 1..{V}, got {g!r}")
            return rank * int(g) // V  # nested blocks of the permuted vocabulary

        base = np.arange(1, V + 1, dtype=np.float64) ** -self.zipf_exponent
        base /= base.sum()  # (V,) Zipf weights by rank
        P = np.zeros((V, V, V))  # (x_{t-2}, x_{t-1}, x_t) mixture conditional
        self.tables = []
        for (g1, g2), w in zip(levels, weights):
            k1, k2 = group_of(g1), group_of(g2)  # (V,), (V,)
            n1, n2 = int(k1.max()) + 1, int(k2.max()) + 1
            rows = n1 * n2
            # each row: Dirichlet around a Zipf base laid over its own random token order
            perm = np.argsort(rng.random((rows, V)), axis=1)  # (rows, V)
            alpha = self.concentration * V * base[perm]  # (rows, V)
            table = rng.gamma(alpha)  # (rows, V)  Dirichlet via normalised gammas
            table = np.maximum(table, 1e-300)
            table /= table.sum(axis=1, keepdims=True)
            self.tables.append(table)
            key = k1[None, :] * n2 + k2[:, None]  # (V x_{t-2}, V x_{t-1}) row index
            P += w * table[key]  # (V, V, V)
        self.P = P  # (V, V, V)
        self.alias_prob, self.alias_idx = _alias_tables(P.reshape(V * V, V))  # (V², V) each
        self._pi = None

    # -- exact quantities -----------------------------------------------------------------------
    def stationary(self, tol=1e-15, max_iter=100_000):
        """Stationary distribution π over states (x_{t−2}, x_{t−1}), shape (V, V).

        Power iteration π'(b, c) = Σ_a π(a, b) p(c | a, b): one step of the chain moves the state
        (a, b) → (b, c). It converges because every transition has positive probability through
        the order-1 level (the chain is irreducible and aperiodic)."""
        if self._pi is None:
            V = self.vocab_size
            pi = np.full((V, V), 1.0 / (V * V))  # (V, V)
            for _ in range(max_iter):
                new = np.einsum("ab,abc->bc", pi, self.P)  # (V, V)
                new /= new.sum()
                done = np.abs(new - pi).sum() < tol
                pi = new
                if done:
                    break
            else:
                raise RuntimeError("stationary distribution did not converge")
            self._pi = pi
        return self._pi

    def conditional_entropy(self):
        """H(p(· | s)) in nats for every state s = (x_{t−2}, x_{t−1}), shape (V, V)."""
        P = self.P
        return -(P * np.log(P)).sum(axis=-1)  # (V, V)

    def entropy_rate(self):
        """The exact entropy rate h = Σ_s π(s) H(p(·|s)) in nats/token
        (chapters/10-scaling-laws.md, eq. 10.7): the irreducible loss E of this language."""
        return float((self.stationary() * self.conditional_entropy()).sum())

    def window_entropy(self, seq_len):
        """Expected loss (nats/token) of the ideal predictor on a window of `seq_len` tokens
        drawn from the stationary chain, where position 0 has no context and position 1 only one
        token: (H(X0) + H(X1 | X0) + (T − 2)·h) / T. Tends to `entropy_rate()` as T grows."""
        T = int(seq_len)
        if T < 1:
            raise ValueError(f"seq_len must be ≥ 1, got {seq_len!r}")
        pi = self.stationary()  # (V, V)
        m = pi.sum(axis=0)  # (V,) marginal of one token
        h0 = -(m * np.log(m)).sum()
        cond = pi / pi.sum(axis=1, keepdims=True)  # (V, V) p(x1 | x0) = π(x0, x1) / m(x0)
        h1 = -(pi * np.log(cond)).sum()
        if T == 1:
            return float(h0)
        return float((h0 + h1 + (T - 2) * self.entropy_rate()) / T)

    def _first_step(self):
        """p(x1 | x0) of the stationary chain, (V, V): the only context the first prediction has."""
        pi = self.stationary()  # (V, V) π(x0, x1)
        return pi / pi.sum(axis=1, keepdims=True)

    def eval_floor(self, seq_len):
        """Exact expected loss (nats/token) of the true process on the sweep's evaluation: a
        window of T+1 stationary tokens, tokens 1..T predicted from their prefixes (the model
        reads window[:, :-1] and is scored on window[:, 1:]). Position 1 has one token of
        context, every later one at least two, so the floor is (H(X1 | X0) + (T − 1)·h) / T;
        for an order-1 language both terms equal h."""
        T = int(seq_len)
        if T < 1:
            raise ValueError(f"seq_len must be ≥ 1, got {seq_len!r}")
        pi = self.stationary()  # (V, V)
        h1 = float(-(pi * np.log(self._first_step())).sum())  # H(X1 | X0)
        return (h1 + (T - 1) * self.entropy_rate()) / T

    def oracle_loss(self, windows):
        """The true process's mean loss on `windows` (B, T+1): −log p(x_t | x_<t) averaged over
        t = 1..T and the B windows — what a perfect model scores on this very sample."""
        w = np.asarray(windows)
        if w.ndim != 2 or w.shape[1] < 2:
            raise ValueError(f"windows must have shape (B, T+1) with T ≥ 1, got {w.shape}")
        first = np.log(self._first_step()[w[:, 0], w[:, 1]])  # (B,)
        rest = self.log_prob(w) if w.shape[1] > 2 else np.zeros((len(w), 0))  # (B, T−1)
        return float(-(first.sum() + rest.sum()) / (w.shape[0] * (w.shape[1] - 1)))

    def entropy_ladder(self):
        """What each amount of context is worth, in nats/token: `unigram` H(X_t), `order1`
        H(X_t | X_{t−1}) and `entropy_rate` H(X_t | X_{t−2}, X_{t−1}). A model first learns the
        unigram (≈ log V here), then the order-1 table, and only with scale the order-2 rows."""
        pi = self.stationary()  # (V, V)
        m = pi.sum(axis=0)  # (V,)
        joint = np.einsum("ab,abc->bc", pi, self.P)  # (V, V) p(x_{t−1}, x_t)
        order1 = -(joint * np.log(joint / joint.sum(axis=1, keepdims=True))).sum()
        return {"unigram": float(-(m * np.log(m)).sum()), "order1": float(order1),
                "entropy_rate": self.entropy_rate()}

    def log_prob(self, tokens):
        """log p(x_t | x_{t−2}, x_{t−1}) for t ≥ 2 of each row of `tokens` (…, T) → (…, T−2)."""
        tokens = np.asarray(tokens)
        return np.log(self.P[tokens[..., :-2], tokens[..., 1:-1], tokens[..., 2:]])

    # -- sampling ------------------------------------------------------------------------------
    def sample_streams(self, n_streams, length, rng=None, state=None):
        """`n_streams` independent chains of `length` tokens, started from π (so every position
        is a stationary draw). Vectorised over streams: one NumPy step per position.

        Inputs:  n_streams B, length T, rng (Generator or seed), state: optional (B, 2) int array
                 of the two previous tokens to continue from (default: a fresh draw from π).
        Returns: (B, T) int64 tokens.
        """
        rng = np.random.default_rng(rng)
        V = self.vocab_size
        B, T = int(n_streams), int(length)
        if B < 1 or T < 0:
            raise ValueError(f"need n_streams ≥ 1 and length ≥ 0, got {n_streams!r}, {length!r}")
        out = np.empty((B, T), dtype=np.int64)  # (B, T)
        if state is None:
            flat = rng.choice(V * V, size=B, p=self.stationary().ravel())  # (B,)
            s = flat.astype(np.int64)  # state index a·V + b
        else:
            state = np.asarray(state, dtype=np.int64)
            if state.shape != (B, 2):
                raise ValueError(f"state must have shape ({B}, 2), got {state.shape}")
            s = state[:, 0] * V + state[:, 1]  # (B,)
        # alias method: pick a column k uniformly, keep it with probability prob[s, k], else
        # take its alias — O(1) work per token instead of scanning a CDF of V entries
        k = rng.integers(0, V, size=(T, B))  # (T, B)
        u = rng.random((T, B))  # (T, B)
        prob = self.alias_prob.reshape(-1)  # (V²·V,)
        alias = self.alias_idx.reshape(-1)  # (V²·V,)
        for t in range(T):
            cell = s * V + k[t]  # (B,) flat index of (state, column)
            tok = np.where(u[t] < prob[cell], k[t], alias[cell])  # (B,)
            out[:, t] = tok
            s = (s % V) * V + tok  # new state (x_{t−1}, x_t)
        return out

    def sample(self, n_tokens, rng=None, n_streams=None):
        """`n_tokens` fresh tokens as one 1-D int64 array.

        Built from `n_streams` stationary chains laid end to end (default ~n_tokens/512, at most
        1024), so it is fast; only the n_streams − 1 seams are not Markov transitions, a
        negligible fraction. For training batches use `batches`, which keeps chains going."""
        n = int(n_tokens)
        if n < 0:
            raise ValueError(f"n_tokens must be ≥ 0, got {n_tokens!r}")
        if n_streams is None:
            n_streams = int(min(1024, max(1, n // 512)))
        length = -(-n // n_streams) if n else 0
        return self.sample_streams(n_streams, length, rng).reshape(-1)[:n]

    def batches(self, batch_size, seq_len, rng=None, pool=1024):
        """Endless training batches of fresh tokens: yields (x, y), each (B, T) int64, with
        y[:, t] = x[:, t+1].

        Tokens come from a pool of `pool` chains (rounded up to a multiple of B) generated
        together, because sampling is vectorised over chains: one refill of (pool, T+1) tokens
        serves pool/B batches, then every chain continues from where it stopped. Nothing repeats
        and every window is a stationary draw."""
        rng = np.random.default_rng(rng)
        B, T = int(batch_size), int(seq_len)
        if B < 1 or T < 1:
            raise ValueError(f"batch_size and seq_len must be ≥ 1, got {batch_size!r}, {seq_len!r}")
        P = -(-max(int(pool), B) // B) * B  # chains in the pool, a multiple of B
        state = None
        while True:
            w = self.sample_streams(P, T + 1, rng, state=state)  # (P, T+1)
            state = w[:, -2:]
            for i in range(0, P, B):
                yield w[i:i + B, :-1], w[i:i + B, 1:]  # (B, T), (B, T)

    def __repr__(self):
        return (f"SyntheticLanguage(vocab_size={self.vocab_size}, seed={self.seed}, "
                f"levels={self.levels}, weights={tuple(np.round(self.weights, 4))}, "
                f"concentration={self.concentration})")


def make_language(name="hierarchical", seed=0):
    """One of the named `LANGUAGES`, its tables drawn with `seed`."""
    if name not in LANGUAGES:
        raise ValueError(f"language must be one of {sorted(LANGUAGES)}, got {name!r}")
    return SyntheticLanguage(seed=seed, **LANGUAGES[name])
