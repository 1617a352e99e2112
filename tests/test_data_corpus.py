"""The built-in corpus and reading user text files."""
import hashlib

import pytest

from minichinchilla.data import builtin_corpus
from minichinchilla.data import Document, build_builtin_documents, load_builtin_documents, load_text_documents


def _digest(documents):
    h = hashlib.sha256()
    for d in documents:
        h.update(f"{d.source}\x00{d.package}\x00{d.name}\x00{d.text}\x01".encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def built():
    return build_builtin_documents()


def test_builtin_corpus_is_deterministic(built):
    assert _digest(build_builtin_documents()) == _digest(built)


def test_builtin_corpus_is_non_trivial(built):
    n_bytes = sum(len(d.text.encode("utf-8")) for d in built)
    assert n_bytes > 1_000_000
    assert len(built) > 1000
    pydoc = [d for d in built if d.source.startswith("pydoc:")]
    stdlib = [d for d in built if d.source.startswith("stdlib:")]
    assert len(pydoc) > 50 and len(stdlib) > 1000
    assert "pydoc:for" in {d.source for d in pydoc}


def test_builtin_metadata_names_the_package(built):
    json_docs = [d for d in built if d.source.startswith("stdlib:json.")]
    assert json_docs and all(d.package == "json" for d in json_docs)
    assert any(d.source == "stdlib:json.decoder" and d.name == "JSONDecoder.decode" for d in built)
    assert all(d.package for d in built if d.source.startswith("stdlib:"))
    # tests, idlelib and site-packages are not prose about the library
    assert not any(d.package in {"test", "idlelib"} or ".test." in d.source for d in built)


@pytest.fixture
def fake_build(built, monkeypatch):
    """Count builds without paying for them (the real build is tested above)."""
    calls = []
    monkeypatch.setattr(builtin_corpus, "build_builtin_documents",
                        lambda: calls.append(1) or list(built))
    return calls


def test_builtin_cache_round_trip(built, fake_build, tmp_path, monkeypatch):
    monkeypatch.setenv("MINICHINCHILLA_CACHE", str(tmp_path))
    first = load_builtin_documents()  # builds and writes the cache
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"  # no temporary file left behind
    assert load_builtin_documents() == first  # read back from the cache
    assert _digest(first) == _digest(built)
    assert len(fake_build) == 1
    load_builtin_documents(use_cache=False)
    assert len(fake_build) == 2


def test_damaged_cache_is_rebuilt(built, fake_build, tmp_path, monkeypatch):
    monkeypatch.setenv("MINICHINCHILLA_CACHE", str(tmp_path))
    load_builtin_documents()
    (path,) = tmp_path.iterdir()
    path.write_text("{not json", encoding="utf-8")
    assert _digest(load_builtin_documents()) == _digest(built)
    assert len(fake_build) == 2


def test_load_text_file_and_folder(tmp_path):
    (tmp_path / "b.txt").write_text("second file", encoding="utf-8")
    (tmp_path / "a.txt").write_text("\ufefffirst file é", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("third", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored: not .txt", encoding="utf-8")
    docs = load_text_documents(tmp_path)
    assert [d.text for d in docs] == ["first file é", "second file", "third"]  # sorted, BOM gone
    assert docs[0] == Document("first file é", str(tmp_path / "a.txt"))
    assert load_text_documents(tmp_path / "b.txt")[0].text == "second file"


def test_missing_path(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_text_documents(tmp_path / "nope.txt")


def test_empty_file_and_folders(tmp_path):
    (tmp_path / "e.txt").write_text("  \n ", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        load_text_documents(tmp_path / "e.txt")
    with pytest.raises(ValueError, match="empty"):
        load_text_documents(tmp_path)
    (tmp_path / "d").mkdir()
    with pytest.raises(ValueError, match="no .txt files"):
        load_text_documents(tmp_path / "d")


def test_binary_file_names_file_and_offset(tmp_path):
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(ValueError, match=r"binary.*byte offset 8") as err:
        load_text_documents(path)
    assert "image.txt" in str(err.value)


def test_non_utf8_file_names_file_and_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café au lait".encode("latin-1"))  # é is the single byte 0xe9
    with pytest.raises(ValueError, match=r"not valid UTF-8: byte 0xe9 at byte offset 3") as err:
        load_text_documents(tmp_path)
    assert "latin1.txt" in str(err.value)
