"""Documents: the unit everything in `minichinchilla.data` works on.

A *document* is one piece of text that belongs together (one help topic, one
docstring, one `.txt` file). We keep documents apart until the very last step,
because the train/validation split is made between documents, never inside one
(see `split.py` for why).

`load_text_documents` reads your own text: one UTF-8 file, or every ``*.txt`` file
in a folder (sorted by path, so the order, and therefore the split, is reproducible).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Document:
    """One piece of text plus where it came from.

    Attributes:
        text: the text itself.
        source: a readable origin, e.g. ``"pydoc:for"``, ``"stdlib:json.decoder"`` or a file path.
        package: the top-level standard-library package of a docstring (``"json"`` for
            ``json.decoder``); the fine-tuning task predicts it. ``""`` when not applicable.
        name: the qualified object a docstring documents (``"JSONDecoder.decode"``); ``""`` for a
            module docstring or non-docstring text.
    """

    text: str
    source: str
    package: str = ""
    name: str = ""


def _read_utf8(path: Path) -> str:
    """Read one file as UTF-8, with an error that says which file and which byte is wrong."""
    data = path.read_bytes()
    # A NUL byte never appears in real text but appears in almost every binary format
    # (images, archives, compiled code), so it is the classic "is this binary?" test.
    nul = data.find(b"\x00")
    if nul != -1:
        raise ValueError(
            f"{str(path)!r} looks like a binary file, not text: NUL byte at byte offset {nul}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{str(path)!r} is not valid UTF-8: byte 0x{data[err.start]:02x} at byte offset "
            f"{err.start} ({err.reason}); re-save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is not part of the text


def load_text_documents(path: str | Path) -> list[Document]:
    """Load a UTF-8 text file (one document) or a folder of ``.txt`` files (one document each).

    Inputs:
        path: a file, or a folder searched recursively for ``*.txt`` (sorted by path).
    Returns:
        a list of `Document` with ``source`` set to the file path; empty files inside a
        folder are skipped.
    Raises:
        ValueError: the path does not exist; the file or folder is empty (a folder with no
            ``.txt`` files, or only empty/whitespace ones); a file is binary or not UTF-8 (the
            message names the file and the byte offset of the first bad byte).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"path {str(path)!r} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise ValueError(f"folder {str(path)!r} contains no .txt files")
    else:
        files = [path]
    documents = [Document(text=_read_utf8(f), source=str(f)) for f in files]
    documents = [d for d in documents if d.text.strip()]
    if not documents:
        what = "folder" if path.is_dir() else "file"
        raise ValueError(f"{what} {str(path)!r} is empty (no text, or only whitespace)")
    return documents
