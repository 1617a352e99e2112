"""The chapters' figures: every one embedded in chapters 00-05 exists, and what chapter 03 says about
the trained model's attention maps holds for the model the figure script trains."""
import importlib.util
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "chapters" / "figures"


def _make_figures():
    spec = importlib.util.spec_from_file_location("make_figures", FIGURES / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_embedded_figure_exists_and_has_alt_text():
    found = 0
    for chapter in sorted((ROOT / "chapters").glob("0[0-5]-*.md")):
        for alt, path in re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", chapter.read_text()):
            assert (chapter.parent / path).is_file(), f"{chapter.name}: {path} is missing"
            assert path.startswith("figures/"), f"{chapter.name}: {path} is not a relative figures/ path"
            assert len(alt.split()) >= 12, f"{chapter.name}: the alt text of {path} does not say what it shows"
            found += 1
    assert found >= 7


def test_every_figure_the_script_draws_is_embedded():
    mf = _make_figures()
    text = "".join(p.read_text() for p in (ROOT / "chapters").glob("0[0-5]-*.md"))
    for name in mf.FIGURES:
        assert f"figures/{name}.png" in text, name


def test_trained_heads_fetch_the_token_three_back():
    """Chapter 03: in layer 1 both heads put 99% of their weight on the copies of the next token."""
    mf = _make_figures()
    model, losses = mf.train_period_model()
    xb, _ = mf.period_batch(np.random.default_rng(123), 1, 16)
    maps = model.attention_maps(xb)
    for head in range(2):
        assert mf.period_rule_mass(maps[0][0, head]) > 0.98
    assert np.mean(losses[-10:]) < np.log(16) - 1.5  # it learned the task


def test_rule_mass_is_low_for_uniform_weights():
    mf = _make_figures()
    T = 16
    P = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]  # (T, T) uniform over the past
    assert mf.period_rule_mass(P) < 0.3
