"""picoface.Gallery: search against a numpy reference, validation, and crash-safe files."""

import signal
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from picoface import Gallery, _core


def unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_top_k(rows, owner, identities, queries, k):
    """Per-identity best cosine, then top-k with ties to the lower identity (numpy)."""
    s = unit(queries) @ unit(rows).T
    best = np.full((len(queries), identities), -np.inf, np.float32)
    for j, o in enumerate(owner):
        best[:, o] = np.maximum(best[:, o], s[:, j])
    order = np.stack([sorted(range(identities), key=lambda i: (-b[i], i))[:k] for b in best])
    return order, np.take_along_axis(best, order, 1)


@pytest.mark.parametrize("d", [1, 15, 16, 17, 128, 129, 512])
def test_gallery_top_k_f32_matches_numpy(isa, rng, d):
    n, ids = 61, 23
    rows = unit(rng.standard_normal((n, d)))
    owner = np.concatenate([np.arange(ids), rng.integers(0, ids, n - ids)]).astype(np.int32)
    queries = unit(rng.standard_normal((4, d)))
    queries[0] = rows[7]
    k = 5
    got_ids, got = _core.gallery_top_k(rows, None, owner, ids, queries, k)
    want_ids, want = reference_top_k(rows, owner, ids, queries, k)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=f"isa {isa} d {d}")
    # Ids may differ only between identities whose scores tie within rounding.
    full = reference_top_k(rows, owner, ids, queries, ids)[1]
    for i, j in zip(*np.nonzero(got_ids != want_ids)):
        tied = np.abs(full[i] - got[i, j]) <= 1e-5
        assert tied.sum() >= 2, f"isa {isa} d {d}: query {i} rank {j}"
    assert got_ids[0, 0] == owner[7] or d == 1  # d = 1: every row is +-1, ties


@pytest.mark.parametrize("d", [1, 31, 32, 33, 64, 128, 512])
def test_gallery_top_k_s8_is_dequantised_exact_dot(isa, rng, d):
    n, ids = 50, 50
    rows = unit(rng.standard_normal((n, d)))
    owner = np.arange(n, dtype=np.int32)
    q8, scale = _core.quantize_rows_s8(rows)
    assert np.abs(q8).max() == 127 and q8.dtype == np.int8
    np.testing.assert_allclose(q8 * scale[:, None], rows, atol=scale.max() / 2 + 1e-7)
    queries = unit(rng.standard_normal((3, d)))
    qq, qs = _core.quantize_rows_s8(queries)
    exact = (qq.astype(np.int64) @ q8.astype(np.int64).T) * qs[:, None] * scale[None, :]
    got_ids, got = _core.gallery_top_k(q8, scale, owner, ids, queries, ids)
    np.testing.assert_allclose(got, np.take_along_axis(exact, got_ids, 1), rtol=1e-6, atol=1e-7,
                               err_msg=f"isa {isa} d {d}")
    assert (np.diff(got, axis=1) <= 0).all()
    # int8 scores track fp32 cosines within the quantisation error.
    np.testing.assert_allclose(got, np.take_along_axis(queries @ rows.T, got_ids, 1), atol=0.03)


def test_quantize_zero_row_and_rounding():
    q, s = _core.quantize_rows_s8(np.array([[0, 0, 0], [1.0, -0.5, 0.25]], np.float32))
    assert s[0] == 0 and (q[0] == 0).all()
    assert q[1].tolist() == [127, -64, 32]  # -63.5 -> -64 and 31.75 -> 32 (nearest)


def test_gallery_top_k_rejects_bad_owner():
    rows = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="owner"):
        _core.gallery_top_k(rows, None, np.array([0, 1, 5], np.int32), 3, rows, 1)


@pytest.mark.parametrize("storage", ["fp32", "int8"])
def test_enroll_identify_remove(rng, storage):
    g = Gallery(storage=storage)
    e = unit(rng.standard_normal((6, 64)))
    for i, name in enumerate("abcdef"):
        g.enroll(name, e[i] * (i + 1))  # scale must not matter
    extra = unit(rng.standard_normal((3, 64)))
    g.enroll("a", extra)
    assert g.names() == list("abcdef") and g.rows == 9 and len(g) == 6
    names, scores = g.identify(e[3], top_k=3)
    assert names[0] == "d" and scores[0] == pytest.approx(1, abs=0.02) and len(names) == 3
    assert scores.dtype == np.float32 and (np.diff(scores) <= 0).all()
    names, scores = g.identify(extra[1])  # a second embedding of "a" is found
    assert names == ["a"]
    batch_names, batch_scores = g.identify(np.stack([e[1], e[4]]), top_k=100)
    assert [n[0] for n in batch_names] == ["b", "e"] and all(len(n) == 6 for n in batch_names)
    g.remove("b")
    assert g.names() == list("acdef") and g.rows == 8 and "b" not in g
    assert g.identify(e[5])[0] == ["f"] and g.identify(extra[2])[0] == ["a"]
    with pytest.raises(KeyError, match="'b'"):
        g.remove("b")
    assert g.embeddings("a").shape == (4, 64)


def test_threshold_filters_and_defaults(rng):
    e = unit(rng.standard_normal((3, 32)))
    g = Gallery()
    for i, n in enumerate("xyz"):
        g.enroll(n, e[i])
    probe = unit(e[0] + 0.3 * rng.standard_normal(32))
    _, everything = g.identify(probe, top_k=3)
    assert len(everything) == 3  # no threshold known: everything, ranked
    names, scores = g.identify(probe, top_k=3, threshold=0.5)
    assert names == ["x"] and scores[0] >= 0.5
    g.threshold = 0.99  # the gallery's default (the embedder's calibrated threshold)
    names, scores = g.identify(probe, top_k=3)
    assert names == [] and scores.shape == (0,)
    names, _ = g.identify(probe, top_k=3, threshold=-1.0)  # an explicit threshold wins
    assert len(names) == 3 and names[0] == "x"


def test_empty_gallery_identifies_nothing():
    names, scores = Gallery().identify(np.ones(8, np.float32), top_k=2)
    assert names == [] and scores.shape == (0,)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 0), np.float32), "N, D >= 1"),
    (np.zeros((2, 3, 4), np.float32), "N, D >= 1"),
    (np.array([1.0, np.nan, 0.0]), "finite"),
    (np.array(["a", "b"]), "dtype"),
    (np.zeros(3, np.float32), "non-zero"),
    ("abc", "float array"),
])
def test_enroll_rejects_bad_embeddings(bad, match):
    with pytest.raises(ValueError, match=match):
        Gallery().enroll("n", bad)


def test_validation_messages_say_expected_and_got(rng):
    g = Gallery()
    g.enroll("a", rng.standard_normal(128))
    with pytest.raises(ValueError, match="expected embeddings of dimension 128.*got 512"):
        g.enroll("b", rng.standard_normal(512))
    with pytest.raises(ValueError, match="dimension 128.*got 64"):
        g.identify(rng.standard_normal(64))
    for name in ("", "   ", None, 3, "a\nb"):
        with pytest.raises(ValueError, match="name"):
            g.enroll(name, rng.standard_normal(128))
    with pytest.raises(ValueError, match="top_k"):
        g.identify(rng.standard_normal(128), top_k=0)
    with pytest.raises(ValueError, match="storage"):
        Gallery(storage="fp16")
    with pytest.raises(ValueError, match="path"):
        Gallery().save()


def filled(rng, storage="fp32", n=20, d=128, embedder_id="model-A"):
    g = Gallery(storage=storage, embedder_id=embedder_id, threshold=0.4)
    e = unit(rng.standard_normal((n + 5, d)))
    for i in range(n):
        g.enroll(f"person {i} é", e[i])
    g.enroll("person 3 é", e[n:])
    return g, e


@pytest.mark.parametrize("storage", ["fp32", "int8"])
def test_save_load_round_trip(tmp_path, rng, storage):
    g, e = filled(rng, storage)
    path = g.save(tmp_path / "g.pfg")
    assert [p.name for p in tmp_path.iterdir()] == ["g.pfg"]  # no temp file left behind
    h = Gallery.load(path, embedder_id="model-A")
    assert h.names() == g.names() and h.storage == storage and h.threshold == pytest.approx(0.4)
    assert h.dim == 128 and h.rows == g.rows and h.embedder_id == "model-A"
    for name in g.names():
        np.testing.assert_array_equal(h.embeddings(name), g.embeddings(name))
    a, b = g.identify(e, top_k=4), h.identify(e, top_k=4)
    assert a[0] == b[0] and all((x == y).all() for x, y in zip(a[1], b[1]))
    # The constructor with a path loads too; an unknown path starts empty and saves there.
    assert Gallery(path).names() == g.names()
    fresh = Gallery(tmp_path / "new.pfg")
    assert fresh.names() == []
    fresh.enroll("x", e[0])
    fresh.save()
    assert Gallery(tmp_path / "new.pfg").names() == ["x"]


def test_empty_gallery_round_trip(tmp_path):
    path = Gallery(embedder_id="m").save(tmp_path / "e.pfg")
    h = Gallery.load(path)
    assert h.names() == [] and h.dim is None and h.embedder_id == "m"


def test_other_embedder_and_storage_refused(tmp_path, rng):
    g, _ = filled(rng)
    path = g.save(tmp_path / "g.pfg")
    with pytest.raises(ValueError, match="made with embedder 'model-A', not 'model-B'"):
        Gallery(path, embedder_id="model-B")
    with pytest.raises(ValueError, match="stores fp32, got storage='int8'"):
        Gallery(path, storage="int8")
    with pytest.raises(FileNotFoundError, match="gallery not found"):
        Gallery.load(tmp_path / "missing.pfg")


def test_truncated_files_are_refused(tmp_path, rng):
    g, _ = filled(rng, "int8", n=4, d=16)
    blob = g.save(tmp_path / "g.pfg").read_bytes()
    bad = tmp_path / "bad.pfg"
    for size in list(range(0, 80)) + list(range(80, len(blob), 7)) + [len(blob) - 1]:
        bad.write_bytes(blob[:size])
        with pytest.raises(ValueError, match=r"bad\.pfg.*(truncated|not a picoface gallery)"):
            Gallery.load(bad)
    bad.write_bytes(blob + b"\0")
    with pytest.raises(ValueError, match="truncated or corrupted"):
        Gallery.load(bad)


@pytest.mark.parametrize("storage", ["fp32", "int8"])
def test_every_flipped_byte_is_refused(tmp_path, rng, storage):
    g, _ = filled(rng, storage, n=3, d=8)
    blob = g.save(tmp_path / "g.pfg").read_bytes()
    bad = tmp_path / "bad.pfg"
    for i in range(len(blob)):
        flipped = bytearray(blob)
        flipped[i] ^= 0x10
        bad.write_bytes(bytes(flipped))
        target = Gallery(embedder_id="model-A")
        with pytest.raises(ValueError, match=r"bad\.pfg") as info:
            target._read(bad, None)
        assert target.names() == [], f"byte {i}: half-loaded"  # nothing kept on failure
        assert "unusable" in str(info.value) or "embedder" in str(info.value), str(info.value)


def test_wrong_version_is_refused(tmp_path, rng):
    g, _ = filled(rng, n=2, d=4)
    blob = bytearray(g.save(tmp_path / "g.pfg").read_bytes())
    blob[8:12] = struct.pack("<I", 99)
    (tmp_path / "v.pfg").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="format version 99"):
        Gallery.load(tmp_path / "v.pfg")
    (tmp_path / "x.pfg").write_bytes(b"not a gallery at all")
    with pytest.raises(ValueError, match="not a picoface gallery"):
        Gallery.load(tmp_path / "x.pfg")


_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from picoface import Gallery
    path, rows, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    g = Gallery(path)
    rng = np.random.default_rng(7)
    g.enroll("intruder", rng.standard_normal((rows, 128)).astype(np.float32))
    if mode == "hang-before-rename":  # the temp file is complete: stop before os.replace
        import picoface.gallery as m, time
        m.os.replace = lambda *a: time.sleep(600)
    print("saving", flush=True)
    g.save()
""")


@pytest.mark.parametrize("mode, rows", [("mid-write", 200_000), ("hang-before-rename", 2_000)])
def test_killed_mid_save_leaves_previous_gallery(tmp_path, rng, mode, rows):
    g, e = filled(rng, n=5)
    path = g.save(tmp_path / "g.pfg")
    before = path.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(rows), mode],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "saving"
        deadline = time.monotonic() + 60
        seen = None
        while seen is None and time.monotonic() < deadline and child.poll() is None:
            temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
            if temps and temps[0].stat().st_size > 0:
                seen = temps[0]
            else:
                time.sleep(0.0005)
        assert seen is not None, f"{mode}: the child finished before its temp file was seen"
        child.send_signal(signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert path.read_bytes() == before
    h = Gallery.load(path)
    assert h.names() == g.names() and "intruder" not in h
    assert h.identify(e[2])[0] == [g.names()[2]]
    assert seen.exists()  # the dead writer's temp file is left for the user, never read
