"""minichinchilla: a from-scratch course in how Chinchilla-style language models work.

The package is organised the way the course is read:

* `backend`      — NumPy on the CPU or CuPy on a GPU, one code path for both
* `functional`   — hand-derived forward/backward pairs for every layer (chapters 02–05)
* `tensor`       — a small reverse-mode autograd engine that wraps those pairs (chapter 01)
* `nn`, `model`  — modules and the decoder-only `TransformerLM` (chapter 05)
* `optim`        — SGD, AdamW, gradient clipping, warmup + cosine schedule (chapter 07)
* `gradcheck`    — finite-difference gradient checks used everywhere
"""
__version__ = "0.1.0"
