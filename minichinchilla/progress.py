"""The progress bar of the long commands (`train`, `finetune`), and the lines printed beside it.

    bar = ProgressBar(total=500, initial=0, out=sys.stdout, quiet=False)
    bar.step(loss=4.21, lr=3e-3, tokens=2048)   # after every optimiser step
    bar.write("step 100 | val 4.50")            # a line above the bar (every evaluation)
    bar.close()

The bar (tqdm) goes to stderr and only when stderr is a terminal, so a log file or a notebook
gets the evaluation lines and no control characters. It shows the loss, the learning rate and
the throughput, smoothed over the last steps.
"""
from __future__ import annotations

import sys
import time

SMOOTHING = 0.9  # tokens/s shown = 0.9 * previous + 0.1 * this step: steady, yet current


class ProgressBar:
    def __init__(self, total: int, initial: int = 0, out=None, quiet: bool = False, unit: str = "step"):
        from tqdm import tqdm

        self.out = out or sys.stdout
        self.quiet = quiet
        self.tokens_per_s = None
        self._t_last = time.perf_counter()
        self._bar = tqdm(total=total, initial=initial, disable=quiet or not sys.stderr.isatty(),
                         dynamic_ncols=True, unit=unit, file=sys.stderr)

    def write(self, line: str) -> None:
        """A line for the reader (suppressed by ``quiet``), printed above the bar."""
        if self.quiet:
            return
        if self._bar.disable:
            print(line, file=self.out, flush=True)
        else:
            self._bar.write(line, file=self.out)

    def restart_clock(self) -> None:
        """Do not count the time since the last step (an evaluation) as training time."""
        self._t_last = time.perf_counter()

    def step(self, loss: float, lr: float, tokens: int = 0) -> None:
        now = time.perf_counter()
        seconds, self._t_last = now - self._t_last, now
        if tokens and seconds > 0:
            rate = tokens / seconds
            self.tokens_per_s = rate if self.tokens_per_s is None else (
                SMOOTHING * self.tokens_per_s + (1 - SMOOTHING) * rate)
        postfix = {"loss": f"{loss:.3f}", "lr": f"{lr:.1e}"}
        if self.tokens_per_s is not None:
            postfix["tok_s"] = f"{self.tokens_per_s:,.0f}"
        self._bar.update(1)
        self._bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        self._bar.close()
