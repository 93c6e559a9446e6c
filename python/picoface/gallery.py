"""A 1:N face gallery: named embeddings, SIMD search, crash-safe files.

File format (little-endian), version 1::

    magic      8 bytes  b"PFGALLRY"
    version    u32      1
    dtype      u32      0 = float32 rows, 1 = int8 rows + float32 per-row scales
    dim        u32      embedding dimension
    identities u32      number of names
    rows       u32      number of stored embeddings
    threshold  f32      match threshold of the embedder (NaN: unknown)
    id_len     u32      then id_len bytes: embedder id, UTF-8 (may be empty)
    names      identities x (u32 length, UTF-8 bytes)
    owner      int32[rows]          row -> identity index
    data       float32[rows, dim]   or int8[rows, dim] then float32[rows] scales
    crc32      u32      CRC-32 (zlib's) of every byte before it
"""

import math
import os
import struct
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from picoface import _core

MAGIC = b"PFGALLRY"
VERSION = 1
STORAGES = ("fp32", "int8")
_DTYPE_CODE = {"fp32": 0, "int8": 1}
_HEADER = struct.Struct("<8sIIIIIfI")
MAX_NAME_BYTES = 1024
_CHUNK = 1 << 24  # bytes per write: bounds the extra memory of save()


def _check_name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"expected a non-empty name string, got {name!r}")
    if any(ord(c) < 32 for c in name):
        raise ValueError(f"expected a name without control characters, got {name!r}")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ValueError(f"expected a name of at most {MAX_NAME_BYTES} UTF-8 bytes, "
                         f"got {len(name.encode('utf-8'))}")
    return name


class Gallery:
    """Named face embeddings searched by cosine similarity (C++ SIMD dot products).

    Each name may hold several embeddings; a query's score for a name is its best cosine
    over that name's embeddings. Embeddings are L2-normalised on enrollment.

    Args:
        path: gallery file. If it exists it is loaded (see :meth:`load` for the errors);
            otherwise the gallery starts empty and :meth:`save` writes there.
        embedder_id: id of the embedder that made the embeddings
            (:attr:`picoface.FaceEmbedder.id`). A file made by another embedder is refused.
            None: not checked (a new gallery then records none).
        storage: "fp32" or "int8" (symmetric per-row int8, 4x smaller; scores are
            de-quantised and agree with fp32 to about 1e-2). None: the file's, else "fp32".
        threshold: default match threshold of :meth:`identify`, e.g.
            :attr:`picoface.FaceEmbedder.threshold`. None: the file's, if it records one.

    Not thread-safe: guard a gallery shared between threads that enroll or remove.

    Raises:
        ValueError: bad options, or a file that is corrupt, truncated, of another storage
            type or made by another embedder.
    """

    def __init__(self, path=None, *, embedder_id: Optional[str] = None,
                 storage: Optional[str] = None, threshold: Optional[float] = None):
        if storage is not None and storage not in STORAGES:
            raise ValueError(f"expected storage one of {STORAGES}, got {storage!r}")
        if embedder_id is not None and not isinstance(embedder_id, str):
            raise ValueError(f"expected embedder_id as a string, got {type(embedder_id).__name__}")
        if threshold is not None:
            threshold = float(threshold)
            if not math.isfinite(threshold):
                raise ValueError(f"expected a finite threshold, got {threshold}")
        self.path = None if path is None else Path(path)
        self.embedder_id = embedder_id
        self.storage = storage or "fp32"
        self.threshold = threshold
        self.dim: Optional[int] = None
        self._names: List[str] = []
        self._index: Dict[str, int] = {}
        self._n = 0
        self._owner = np.zeros(0, np.int32)
        self._data = np.zeros((0, 0), np.float32)  # int8 for "int8" storage
        self._scale = np.zeros(0, np.float32)
        if self.path is not None and self.path.exists():
            self._read(self.path, storage)
            if threshold is not None:
                self.threshold = threshold

    @classmethod
    def load(cls, path, *, embedder_id: Optional[str] = None,
             threshold: Optional[float] = None) -> "Gallery":
        """Loads an existing gallery file.

        Raises:
            FileNotFoundError: no such file.
            ValueError: the file is not a gallery, is truncated or corrupted (checked by its
                length and CRC-32 before anything is kept), or was made by an embedder other
                than ``embedder_id``.
        """
        if not Path(path).is_file():
            raise FileNotFoundError(f"gallery not found: {str(path)!r}")
        return cls(path, embedder_id=embedder_id, threshold=threshold)

    # ---- contents ---------------------------------------------------------------------

    def names(self) -> List[str]:
        """Enrolled names, in enrollment order."""
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name) -> bool:
        return name in self._index

    @property
    def rows(self) -> int:
        """Number of stored embeddings (all names)."""
        return self._n

    def enroll(self, name: str, embeddings) -> None:
        """Adds embeddings under ``name`` (a new name, or more embeddings for a known one).

        Args:
            name: non-empty string without control characters.
            embeddings: float [D] or [N, D], finite, non-zero; the first enrollment fixes D.

        Raises:
            ValueError: bad name, shape, dtype or values, or D unlike the gallery's.
        """
        _check_name(name)
        rows = self._rows(embeddings, "embeddings")
        norms = np.linalg.norm(rows, axis=1)
        if not (norms > 0).all():
            raise ValueError(f"expected non-zero embeddings, got a zero row at index "
                             f"{int(np.argmin(norms))}")
        rows = (rows / norms[:, None]).astype(np.float32)
        if self.dim is None:
            self.dim = rows.shape[1]
            self._data = np.zeros((0, self.dim), np.int8 if self.storage == "int8" else np.float32)
        ident = self._index.get(name)
        if ident is None:
            ident = len(self._names)
        self._reserve(self._n + len(rows))
        end = self._n + len(rows)
        if self.storage == "int8":
            q, s = _core.quantize_rows_s8(rows)
            self._data[self._n:end] = q
            self._scale[self._n:end] = s
        else:
            self._data[self._n:end] = rows
        self._owner[self._n:end] = ident
        self._n = end
        if name not in self._index:
            self._index[name] = ident
            self._names.append(name)

    def remove(self, name: str) -> None:
        """Removes ``name`` and all its embeddings.

        Raises:
            KeyError: unknown name.
        """
        if name not in self._index:
            raise KeyError(f"no such name in the gallery: {name!r}")
        ident = self._index.pop(name)
        keep = self._owner[:self._n] != ident
        owner = self._owner[:self._n][keep]
        owner[owner > ident] -= 1
        data = self._data[:self._n][keep]
        scale = self._scale[:self._n][keep] if self.storage == "int8" else self._scale
        self._n = len(owner)
        self._owner, self._data, self._scale = owner, data, scale
        del self._names[ident]
        self._index = {n: i for i, n in enumerate(self._names)}

    def identify(self, embeddings, top_k: int = 1, threshold: Optional[float] = None):
        """Best-matching names for each query embedding.

        Args:
            embeddings: float [D] (one query) or [M, D] (need not be normalised).
            top_k: at most this many names per query, best first.
            threshold: keep only names scoring >= threshold. None: the gallery's
                :attr:`threshold` (the embedder's calibrated one, when it was given or the
                file records it); if that is unknown too, nothing is filtered and the
                ``top_k`` best names come back whatever their score.

        Returns:
            ``(names, scores)``. For a [D] query: a list of up to ``top_k`` names and a float32
            array of their cosine scores. For [M, D]: a list of M such lists and a list of M
            such arrays. An empty gallery gives empty results.

        Raises:
            ValueError: bad shape, dtype, non-finite values, D unlike the gallery's, or
                top_k < 1.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"expected top_k >= 1, got {top_k!r}")
        single = np.ndim(embeddings) == 1
        queries = self._rows(embeddings, "query embeddings")
        if threshold is None:
            threshold = self.threshold
        m = len(queries)
        if not self._names:
            names, scores = [[] for _ in range(m)], [np.zeros(0, np.float32) for _ in range(m)]
        else:
            norms = np.linalg.norm(queries, axis=1, keepdims=True)
            queries = np.ascontiguousarray(queries / np.maximum(norms, 1e-30), np.float32)
            k = min(int(top_k), len(self._names))
            scale = self._scale[:self._n] if self.storage == "int8" else None
            ids, sc = _core.gallery_top_k(self._data[:self._n], scale, self._owner[:self._n],
                                          len(self._names), queries, k)
            names, scores = [], []
            for row_ids, row_sc in zip(ids, sc):
                ok = np.ones(k, bool) if threshold is None else row_sc >= threshold
                names.append([self._names[i] for i in row_ids[ok]])
                scores.append(row_sc[ok].astype(np.float32))
        return (names[0], scores[0]) if single else (names, scores)

    def embeddings(self, name: str) -> np.ndarray:
        """The stored (normalised; de-quantised for int8) embeddings of ``name``, [N, D]."""
        if name not in self._index:
            raise KeyError(f"no such name in the gallery: {name!r}")
        sel = self._owner[:self._n] == self._index[name]
        rows = self._data[:self._n][sel].astype(np.float32)
        if self.storage == "int8":
            rows *= self._scale[:self._n][sel][:, None]
        return rows

    # ---- files ------------------------------------------------------------------------

    def save(self, path=None) -> Path:
        """Writes the gallery atomically: a temporary file in the same directory is written,
        flushed and fsynced, renamed over ``path`` and the directory fsynced, so a crash at
        any point leaves either the previous file or the new one, never a mix.

        Args:
            path: destination; default the gallery's :attr:`path` (set to ``path`` after).

        Returns:
            The path written.

        Raises:
            ValueError: no path given and the gallery has none.
            OSError: the directory is not writable.
        """
        if path is None and self.path is None:
            raise ValueError("expected a path: this gallery was created without one")
        dest = Path(path) if path is not None else self.path
        dest = dest.resolve()
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                crc = 0
                for part in self._parts():
                    mv = memoryview(part).cast("B")
                    for start in range(0, len(mv), _CHUNK):
                        chunk = mv[start:start + _CHUNK]
                        crc = _core.crc32(chunk, crc)
                        f.write(chunk)
                f.write(struct.pack("<I", crc))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_dir(dest.parent)
        self.path = dest
        return dest

    def _parts(self):
        """The file's byte blocks before the checksum."""
        ident = (self.embedder_id or "").encode("utf-8")
        dim = self.dim or 0
        thr = float("nan") if self.threshold is None else self.threshold
        yield _HEADER.pack(MAGIC, VERSION, _DTYPE_CODE[self.storage], dim, len(self._names),
                           self._n, thr, len(ident)) + ident
        yield b"".join(struct.pack("<I", len(b)) + b for b in (n.encode("utf-8") for n in self._names))
        yield np.ascontiguousarray(self._owner[:self._n], "<i4")
        if dim:
            yield np.ascontiguousarray(self._data[:self._n])
        if self.storage == "int8":
            yield np.ascontiguousarray(self._scale[:self._n], "<f4")

    def _read(self, path: Path, storage: Optional[str]) -> None:
        with open(path, "rb") as f:
            blob = f.read()

        def bad(what: str):
            return ValueError(f"gallery file {str(path)!r} is unusable: {what}")

        if len(blob) < len(MAGIC) or blob[:len(MAGIC)] != MAGIC:
            raise bad(f"not a picoface gallery (expected magic {MAGIC!r}, got {blob[:8]!r})")
        if len(blob) < _HEADER.size + 4:
            raise bad(f"truncated ({len(blob)} bytes, a gallery has at least {_HEADER.size + 4})")
        _, version, dtype, dim, count, rows, thr, id_len = _HEADER.unpack_from(blob)
        if version != VERSION:
            raise bad(f"format version {version}, this picoface reads version {VERSION}")
        if dtype not in (0, 1):
            raise bad(f"unknown storage code {dtype} (corrupted?)")
        file_storage = STORAGES[dtype]
        pos = _HEADER.size
        # Every length is checked against the file size before it is used, so a flipped count
        # cannot trigger a huge allocation; the CRC then vouches for every byte.
        if pos + id_len > len(blob) - 4:
            raise bad("truncated or corrupted (embedder id runs past the end)")
        try:
            file_id = blob[pos:pos + id_len].decode("utf-8")
            pos += id_len
            names = []
            for _ in range(count):
                if pos + 4 > len(blob) - 4:
                    raise bad("truncated or corrupted (name table runs past the end)")
                (n,) = struct.unpack_from("<I", blob, pos)
                if n > MAX_NAME_BYTES or pos + 4 + n > len(blob) - 4:
                    raise bad("truncated or corrupted (name table runs past the end)")
                names.append(blob[pos + 4:pos + 4 + n].decode("utf-8"))
                pos += 4 + n
        except UnicodeDecodeError:
            raise bad("corrupted (a name or the embedder id is not UTF-8)") from None
        item = 4 if dtype == 0 else 1
        expected = pos + 4 * rows + rows * dim * item + (4 * rows if dtype == 1 else 0) + 4
        if expected != len(blob):
            raise bad(f"truncated or corrupted (its header implies {expected} bytes, "
                      f"the file has {len(blob)})")
        stored = struct.unpack_from("<I", blob, len(blob) - 4)[0]
        actual = _core.crc32(memoryview(blob)[:len(blob) - 4])
        if stored != actual:
            raise bad(f"checksum mismatch (CRC-32 {actual:08x}, file says {stored:08x}): "
                      "the file is corrupted")
        # From here the bytes are the ones save() wrote; what follows checks invariants.
        if self.embedder_id is not None and file_id and file_id != self.embedder_id:
            raise ValueError(f"gallery file {str(path)!r} was made with embedder {file_id!r}, "
                             f"not {self.embedder_id!r}: embeddings of different models are "
                             "not comparable (re-enroll with this model)")
        if storage is not None and storage != file_storage:
            raise ValueError(f"gallery file {str(path)!r} stores {file_storage}, "
                             f"got storage={storage!r}")
        if len(set(names)) != len(names) or not all(n.strip() for n in names):
            raise bad("empty or duplicate names")
        owner = np.frombuffer(blob, "<i4", rows, pos).astype(np.int32)
        pos += 4 * rows
        if rows and (owner.min() < 0 or owner.max() >= count):
            raise bad("a row belongs to no name")
        if len(np.unique(owner)) != count:
            raise bad("a name has no embeddings")
        if dtype == 0:
            data = np.frombuffer(blob, "<f4", rows * dim, pos).astype(np.float32).reshape(rows, dim)
            scale = np.zeros(0, np.float32)
        else:
            data = np.frombuffer(blob, np.int8, rows * dim, pos).copy().reshape(rows, dim)
            scale = np.frombuffer(blob, "<f4", rows, pos + rows * dim).astype(np.float32)
        if not np.isfinite(data if dtype == 0 else scale).all():
            raise bad("non-finite values")
        if count and dim == 0:
            raise bad("zero embedding dimension")
        # Only now, with everything checked, does the gallery take the new contents.
        self.storage = file_storage
        self.embedder_id = self.embedder_id or file_id or None
        self.threshold = None if math.isnan(thr) else float(thr)
        self.dim = dim or None
        self._names = names
        self._index = {n: i for i, n in enumerate(names)}
        self._n = rows
        self._owner, self._data, self._scale = owner, data, scale

    # ---- helpers ----------------------------------------------------------------------

    def _rows(self, x, what: str) -> np.ndarray:
        if isinstance(x, np.ndarray) and x.dtype.kind not in "fiu":
            raise ValueError(f"expected {what} as a float array [D] or [N, D], got dtype {x.dtype}")
        try:
            arr = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"expected {what} as a float array [D] or [N, D], "
                             f"got {type(x).__name__}") from None
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"expected {what} as [D] or [N, D] with N, D >= 1, "
                             f"got shape {arr.shape}")
        if self.dim is not None and arr.shape[1] != self.dim:
            raise ValueError(f"expected {what} of dimension {self.dim} (the gallery's), "
                             f"got {arr.shape[1]}")
        if not np.isfinite(arr).all():
            raise ValueError(f"expected finite {what}, got NaN or inf")
        return np.ascontiguousarray(arr)

    def _reserve(self, n: int) -> None:
        cap = len(self._owner)
        if n <= cap and len(self._data) >= n:
            return
        new = max(n, 2 * cap, 16)
        owner = np.zeros(new, np.int32)
        owner[:self._n] = self._owner[:self._n]
        data = np.zeros((new, self.dim), self._data.dtype)
        data[:self._n] = self._data[:self._n]
        self._owner, self._data = owner, data
        if self.storage == "int8":
            scale = np.zeros(new, np.float32)
            scale[:self._n] = self._scale[:self._n]
            self._scale = scale

    def __repr__(self) -> str:
        return (f"Gallery({len(self._names)} names, {self._n} embeddings, dim={self.dim}, "
                f"storage={self.storage!r}, embedder_id={self.embedder_id!r})")


def _fsync_dir(directory: Path) -> None:
    """Makes a rename in ``directory`` durable (POSIX; a no-op where directories cannot be
    opened, as on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
