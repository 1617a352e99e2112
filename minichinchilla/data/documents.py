"""Documents: the unit everything in `minichinchilla.data` works on.

A *document* is one piece of text that belongs together (one help topic, one
docstring, one `.txt` file). We keep documents apart until the very last step,
because the train/validation split is made between documents, never inside one
(see `split.py` for why).

`load_text_documents` reads your own text: one UTF-8 file, or every ``*.txt`` file
in a folder (sorted by path, so the order, and therefore the split, is reproducible).
"""
from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

from ..resources import available_memory_bytes


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


READ_CHUNK_BYTES = 1 << 20  # files are read 1 MiB at a time: binary and size checks come first
# Preparing text for training holds several copies of it at once (the bytes, the str, its
# cleaned copy, the token ids as int64): a file may use at most this fraction of free memory.
MAX_SHARE_OF_FREE_MEMORY_PER_TEXT_BYTE = 1 / 16


def max_text_bytes() -> int | None:
    """The most text (UTF-8 bytes) this machine can prepare for training now, or None if unknown."""
    free = available_memory_bytes()
    return None if free is None else int(free * MAX_SHARE_OF_FREE_MEMORY_PER_TEXT_BYTE)


def _read_utf8(path: Path, limit: int | None = None) -> str:
    """Read one file as UTF-8, a chunk at a time, with an error that says which file and which
    byte is wrong. A binary file (``/dev/zero``) fails at its first chunk, and a file larger
    than `limit` bytes (a device, a pipe, a file that grew) fails when it passes the limit,
    before it fills the memory."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts, offset = [], 0
    with open(path, "rb") as f:
        while chunk := f.read(READ_CHUNK_BYTES):
            # A NUL byte never appears in real text but appears in almost every binary format
            # (images, archives, compiled code), so it is the classic "is this binary?" test.
            nul = chunk.find(b"\x00")
            if nul != -1:
                raise ValueError(f"{str(path)!r} looks like a binary file, not text: NUL byte at "
                                 f"byte offset {offset + nul}")
            if limit is not None and offset + len(chunk) > limit:
                raise ValueError(_too_large(path, f"more than {limit:,}", limit))
            parts.append(_decode(decoder, chunk, path, offset))
            offset += len(chunk)
    parts.append(_decode(decoder, b"", path, offset, final=True))
    return "".join(parts).removeprefix("\ufeff")  # a UTF-8 byte-order mark is not part of the text


def _decode(decoder, chunk: bytes, path: Path, offset: int, final: bool = False) -> str:
    try:
        return decoder.decode(chunk, final=final)
    except UnicodeDecodeError as err:
        held_back = len(err.object) - len(chunk)  # bytes of a character begun in the last chunk
        where = offset - held_back + err.start
        raise ValueError(
            f"{str(path)!r} is not valid UTF-8: byte 0x{err.object[err.start]:02x} at byte offset "
            f"{where} ({err.reason}); re-save the file as UTF-8"
        ) from None


def _too_large(path, size: str, limit: int) -> str:
    return (f"{str(path)!r} is too large to train on here: {size} bytes of text, and this machine's "
            f"free memory allows about {limit:,} (preparing text holds several copies of it); "
            f"use a smaller file or free some memory")


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
            message names the file and the byte offset of the first bad byte); the text is too
            large for the free memory (`max_text_bytes`).
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
    limit = max_text_bytes()
    total = sum(f.stat().st_size for f in files)  # 0 for devices and pipes: checked while reading
    if limit is not None and total > limit:
        raise ValueError(_too_large(path, f"{total:,}", limit))
    documents = [Document(text=_read_utf8(f, limit), source=str(f)) for f in files]
    documents = [d for d in documents if d.text.strip()]
    if not documents:
        what = "folder" if path.is_dir() else "file"
        raise ValueError(f"{what} {str(path)!r} is empty (no text, or only whitespace)")
    return documents
