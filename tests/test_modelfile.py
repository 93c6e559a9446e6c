"""The .pface model file: round trips, validation of every field, a mutation fuzzer that
must never crash the loader, the ONNX importer and the CLI."""

import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from picoface import _core, modelfile as mf

from conftest import SFACE, SHARED, YUNET_S, need, need_module

META = {"task": "detect", "architecture": "unit", "input.size_policy": "multiple",
        "input.multiple": 32, "input.color": "bgr", "input.mean": [0.0, 0.0, 0.0],
        "input.std": [1.0, 1.0, 1.0], "input.layout": "nchw", "head.type": "yunet",
        "head.strides": [8, 16, 32], "threshold.score": 0.5, "align.template": [1.0, 2.0, 3.0, 4.0]}

LANDMARKS_META = dict(META, **{"task": "landmarks", "landmarks.points": 68,
                               "landmarks.coords": "unit", "crop.policy": "square_max",
                               "crop.scale": 1.1})


def small_model(meta=None, **changes):
    rng = np.random.default_rng(0)
    tensors = [mf.Tensor("x", dtype="float32", shape=(1, 3, -1, -1)),
               mf.Tensor("w", data=rng.normal(size=(4, 3, 3, 3)).astype(np.float32)),
               mf.Tensor("b", data=np.arange(4, dtype=np.float32)),
               mf.Tensor("wq", data=rng.integers(-128, 128, (4, 4), dtype=np.int8),
                         scales=[0.1, 0.2, 0.3, 0.4], zero_points=[0, 0, 0, 0], axis=0),
               mf.Tensor("y", shape=(1, 4, -1, -1)), mf.Tensor("z", shape=(1, 4, -1, -1))]
    ops = [mf.Op("Conv", ["x", "w", "b"], ["y"], {"pads": [1, 1, 1, 1], "group": 1}),
           mf.Op("Relu", ["y", None], ["z"], {"alpha": 0.5, "names": ["a", "b"]})]
    args = dict(metadata=dict(META if meta is None else meta), tensors=tensors, ops=ops,
                inputs=["x"], outputs=["z"])
    args.update(changes)
    return mf.encode(**args)


def with_crc(blob: bytes) -> bytes:
    """Recomputes the header checksum: a hostile file, not an accidental one."""
    return blob[:12] + struct.pack("<I", _core.crc32(blob[64:])) + blob[16:]


def test_landmark_metadata_round_trips():
    assert mf.summary(small_model(LANDMARKS_META))["metadata"] == LANDMARKS_META


def test_round_trip():
    s = mf.summary(small_model())
    assert s["version"] == mf.VERSION
    for k, v in META.items():
        assert s["metadata"][k] == v
    names = [t["name"] for t in s["tensors"]]
    assert names == ["x", "w", "b", "wq", "y", "z"]
    w = s["tensors"][1]
    assert w["constant"] and w["shape"] == [4, 3, 3, 3] and w["nbytes"] == 4 * 108
    assert s["tensors"][3]["scales"] == pytest.approx([0.1, 0.2, 0.3, 0.4]) and s["tensors"][3]["axis"] == 0
    assert s["tensors"][0]["shape"] == [1, 3, -1, -1] and not s["tensors"][0]["constant"]
    assert s["ops"][0] == {"type": "Conv", "inputs": [0, 1, 2], "outputs": [4],
                           "attrs": {"pads": [1, 1, 1, 1], "group": 1}}
    assert s["ops"][1]["inputs"] == [4, -1] and s["ops"][1]["attrs"]["names"] == ["a", "b"]
    assert s["parameters"] == 108 + 4 + 16


def test_data_is_64_byte_aligned():
    blob = small_model()
    data_off = struct.unpack_from("<Q", blob, 48)[0]
    assert data_off % 64 == 0


@pytest.mark.parametrize("mutate,match", [
    (lambda b: b"NOTPICO!" + b[8:], "bad magic"),
    (lambda b: b[:8] + struct.pack("<I", 99) + b[12:], "format version 99"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "checksum mismatch"),
    (lambda b: b[:40], "shorter than its header|outside the file"),
    (lambda b: with_crc(b[:16] + struct.pack("<Q", 1 << 40) + b[24:]), "outside the file"),
])
def test_rejects_damaged_headers(mutate, match):
    with pytest.raises(ValueError, match=match):
        mf.summary(mutate(small_model()))


@pytest.mark.parametrize("change,match", [
    (dict(metadata={k: v for k, v in META.items() if k != "task"}), "lacks 'task'"),
    (dict(metadata=dict(META, task="dance")), "unsupported value 'dance'"),
    (dict(metadata=dict(META, **{"input.mean": "zero"})), "input.mean' has the wrong type"),
    (dict(metadata=dict(META, **{"input.std": [1.0, 0.0, 1.0]})), "zero"),
    (dict(metadata=dict(META, **{"input.size_policy": "fixed"})), "fixed input needs input.size"),
    (dict(metadata=dict(META, **{"align.template": [1.0, 2.0, 3.0]})), "x,y pairs"),
    (dict(metadata=dict(META, **{"head.anchor_sizes": [8.0, 16.0, 32.0]})), "come together"),
    (dict(metadata=dict(META, **{"head.anchor_sizes": [8.0, 16.0, 32.0],
                                 "head.anchor_counts": [1, 1, 2]})), "sum to 4"),
    (dict(metadata=dict(META, **{"head.anchor_sizes": [8.0, 16.0],
                                 "head.anchor_counts": [1, 1]})), "one count per head.strides"),
    (dict(metadata=dict(LANDMARKS_META, **{"landmarks.points": 0})), "landmarks.points within"),
    (dict(metadata={k: v for k, v in LANDMARKS_META.items() if k != "crop.scale"}),
     "needs landmarks.coords, crop.policy and crop.scale"),
    (dict(metadata=dict(LANDMARKS_META, **{"crop.scale": 0.0})), "crop.scale must be"),
    (dict(metadata=dict(LANDMARKS_META, **{"crop.scale": 1})), "crop.scale' has the wrong type"),
    (dict(metadata=dict(LANDMARKS_META, **{"crop.policy": "circle"})), "unsupported value 'circle'"),
    (dict(metadata=dict(LANDMARKS_META, **{"landmarks.coords": "mm"})), "unsupported value 'mm'"),
    (dict(outputs=["y", "w"]), None),
    (dict(inputs=["w"]), "is a constant"),
    (dict(ops=[mf.Op("Relu", ["z"], ["y"]), mf.Op("Relu", ["x"], ["z"])]), "before it is computed"),
    (dict(ops=[mf.Op("Relu", ["x"], ["y"]), mf.Op("Relu", ["x"], ["y"])]), "already has a value"),
    (dict(ops=[mf.Op("Relu", ["x"], ["y"])]), "never computed"),
])
def test_rejects_inconsistent_content(change, match):
    if match is None:  # constants may be outputs; this one is valid
        mf.summary(small_model(**change))
        return
    with pytest.raises(ValueError, match=match):
        mf.summary(small_model(**change))


def test_rejects_non_finite_metadata():
    bad = dict(META, **{"threshold.score": float("nan")})
    with pytest.raises(ValueError, match="not finite"):
        mf.summary(small_model(meta=bad))


def test_writer_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown tensor 'nope'"):
        small_model(outputs=["nope"])
    with pytest.raises(ValueError, match="cannot store"):
        small_model(meta=dict(META, bad=object()))


def fuzz_seed_files():
    seeds = [small_model()]
    if YUNET_S.exists() and _has("onnx"):
        from picoface.convert import convert_onnx
        seeds.append(convert_onnx(YUNET_S, task="detect", head="yunet"))
    return seeds


def _has(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def test_mutated_files_never_crash():
    # 4000 mutants per seed: truncations, byte flips and absurd 32/64-bit values in random
    # places, most with a recomputed checksum so the parser behind it is exercised. Each
    # load must either succeed or raise ValueError (the process would die on a crash).
    rng = np.random.default_rng(2026)
    outcomes = {"ok": 0, "rejected": 0}
    for seed in fuzz_seed_files():
        for _ in range(4000):
            b = bytearray(seed)
            kind = rng.integers(0, 4)
            if kind == 0:
                b = b[: rng.integers(0, len(b))]
            elif kind == 1:
                for _ in range(rng.integers(1, 8)):
                    b[rng.integers(0, len(b))] ^= 1 << int(rng.integers(0, 8))
            else:
                pos = int(rng.integers(0, max(1, len(b) - 8)))
                value = [0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 40, (1 << 64) - 1][rng.integers(0, 6)]
                fmt = "<I" if kind == 2 else "<Q"
                b[pos:pos + struct.calcsize(fmt)] = struct.pack(fmt, value & ((1 << (8 * struct.calcsize(fmt))) - 1))
            blob = bytes(b)
            if len(blob) > 64 and rng.random() < 0.8:
                blob = with_crc(blob)
            try:
                mf.summary(blob)
                outcomes["ok"] += 1
            except ValueError:
                outcomes["rejected"] += 1
    assert outcomes["rejected"] > 1000  # the mutations do reach the validation


def test_save_is_atomic(tmp_path):
    target = tmp_path / "m.pface"
    mf.save(target, small_model())
    mf.save(target, small_model())
    assert [p.name for p in tmp_path.iterdir()] == ["m.pface"]
    assert mf.summary(target)["metadata"]["task"] == "detect"
    with pytest.raises(FileNotFoundError):
        mf.summary(tmp_path / "missing.pface")


def test_convert_yunet_writes_the_optimised_graph():
    need_module("onnx")
    from picoface import importer
    from picoface.convert import convert_onnx
    graph = importer.import_onnx(need(YUNET_S)).graph
    s = mf.summary(convert_onnx(YUNET_S, task="detect", head="yunet"))
    assert [o["type"] for o in s["ops"]] == [n.type for n in graph.nodes]
    assert [o["attrs"] for o in s["ops"]] == [n.attrs for n in graph.nodes]
    assert sum(o["attrs"].get("activation") == "relu" for o in s["ops"]) == 15  # every Relu fused
    assert s["parameters"] == sum(a.size for a in graph.constants.values())
    names = [t["name"] for t in s["tensors"]]
    assert [names[i] for i in s["inputs"]] == ["input"] and s["tensors"][s["inputs"][0]]["shape"] == [-1, 3, -1, -1]
    md = s["metadata"]
    assert (md["head.type"], md["input.size_policy"], md["input.multiple"]) == ("yunet", "multiple", 32)
    assert md["provenance"].startswith("converted from yunet_s_dynamic.onnx (sha256 ")


def test_cli_convert_and_inspect(tmp_path):
    need_module("onnx")
    out = tmp_path / "sface.pface"
    run = lambda *a: subprocess.run([sys.executable, "-m", "picoface", *map(str, a)],
                                    capture_output=True, text=True)
    r = run("convert", need(SFACE), "--task", "embed", "--preset", "sface", "-o", out)
    assert r.returncode == 0, r.stderr
    r = run("inspect", out, "--json")
    s = json.loads(r.stdout)
    assert s["metadata"]["input.size_policy"] == "fixed" and s["metadata"]["input.size"] == [112, 112]
    assert s["metadata"]["input.color"] == "rgb"
    r = run("inspect", tmp_path / "nope.pface")
    assert r.returncode == 1 and "not found" in r.stderr
    bad = tmp_path / "bad.pface"
    bad.write_bytes(b"PICOFACE" + b"\0" * 100)
    r = run("inspect", bad)
    assert r.returncode == 1 and r.stderr.startswith("picoface: error: invalid picoface model file")
    r = run("convert", need(SFACE), "--task", "detect", "--head", "nope", "-o", out)
    assert r.returncode == 1 and "expected --head one of" in r.stderr


def test_mutated_graphs_never_crash_the_engine():
    # Structure-only mutants (header, metadata, graph; not the weights) of a real detector,
    # each with a valid checksum, are loaded, planned and run on a small frame: every one
    # must either work or raise ValueError / RuntimeError (absurd attributes such as 2^60
    # pads are bounded before anything is allocated).
    need_module("onnx")
    if not hasattr(_core, "Engine"):
        pytest.skip("this build has no native engine")
    from picoface.convert import convert_onnx
    seed = convert_onnx(need(YUNET_S), task="detect", head="yunet")
    limit = struct.unpack_from("<Q", seed, 48)[0]  # data section offset
    rng = np.random.default_rng(7)
    x = rng.random((1, 3, 64, 64), dtype=np.float32) * 255
    ran = 0
    for _ in range(4000):
        b = bytearray(seed)
        if rng.random() < 0.5:
            for _ in range(rng.integers(1, 4)):
                b[rng.integers(0, limit)] ^= 1 << int(rng.integers(0, 8))
        else:
            fmt = "<I" if rng.random() < 0.5 else "<Q"
            pos = int(rng.integers(0, limit - 8))
            value = [0, 1, 2, 3, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 40, (1 << 64) - 1][rng.integers(0, 8)]
            b[pos:pos + struct.calcsize(fmt)] = struct.pack(fmt, value & ((1 << (8 * struct.calcsize(fmt))) - 1))
        blob = with_crc(bytes(b))
        try:
            _core.Engine(blob, 1).run([x])
            ran += 1
        except (ValueError, RuntimeError, MemoryError):
            pass
    assert ran > 50  # some mutants (names, unused metadata) still run
