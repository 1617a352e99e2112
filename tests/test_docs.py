"""The course's cross-references hold: every equation cited in the code exists in its chapter,
every chapter has its notebook, and chapters use only the math GitHub and the book both render."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
CITATION = re.compile(r"chapters/(\d\d-[\w-]+\.md),? eqs?\.? ([\d.]+(?:\s*(?:–|-|,|and)\s*[\d.]+)*)")


def cited():
    for path in sorted((ROOT / "minichinchilla").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for m in CITATION.finditer(text):
            for eq in re.findall(r"\d+\.\d+", m.group(2)):
                yield path.relative_to(ROOT), m.group(1), eq


def test_every_cited_equation_exists():
    missing = []
    citations = list(cited())
    assert len(citations) > 20, "the code should cite its chapters' equations"
    for src, chapter, eq in citations:
        ch = ROOT / "chapters" / chapter
        if not ch.exists():
            missing.append(f"{src}: cites {chapter}, which does not exist")
        elif f"\\tag{{{eq}}}" not in ch.read_text(encoding="utf-8"):
            missing.append(f"{src}: cites {chapter} eq. {eq}, which has no \\tag{{{eq}}}")
    assert not missing, "\n".join(sorted(set(missing)))


def test_chapters_and_notebooks_pair_up():
    chapters = sorted(p.stem for p in (ROOT / "chapters").glob("[0-9][0-9]-*.md"))
    assert chapters, "no chapters"
    for stem in chapters:
        assert (ROOT / "notebooks" / f"{stem}.ipynb").exists(), f"chapter {stem} has no notebook"


def test_chapter_math_renders_on_github_and_in_the_book():
    for ch in sorted((ROOT / "chapters").glob("*.md")):
        text = ch.read_text(encoding="utf-8")
        assert "\\{" not in text and "\\}" not in text, f"{ch.name}: use \\lbrace/\\rbrace, not \\{{"
        for line in text.splitlines():
            if "$$" in line:
                assert line.strip() == "$$", f"{ch.name}: '$$' must stand alone on its line: {line!r}"
        tags = re.findall(r"\\tag\{([\d.]+)\}", text)
        assert len(tags) == len(set(tags)), f"{ch.name}: duplicate equation tags"
        for heading in ("Summary", "Exercises", "References"):
            assert re.search(rf"^#+ .*{heading}", text, re.M), f"{ch.name}: no '{heading}' section"
