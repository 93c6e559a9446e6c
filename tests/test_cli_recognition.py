"""picoface verify / enroll / identify / eval verify, run in-process as a user would."""

import json
from collections import defaultdict

import numpy as np
import pytest

from conftest import FULLRES12, SFACE, SHARED, YUNET_S, need, need_module
from picoface import Gallery
from picoface.cli import main

CELEBA = SHARED / "data/celeba"
GROUP = FULLRES12 / "images/12_Group_Group_12_Group_Group_12_10.jpg"


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_recognition_commands_need_a_model(capsys, tmp_path):
    for argv in (["verify", "a.jpg", "b.jpg"], ["enroll", "x", "a.jpg", "--gallery", tmp_path / "g"],
                 ["identify", "a.jpg", "--gallery", tmp_path / "g"],
                 ["eval", "verify", "--pairs", tmp_path / "p.tsv"]):
        code, out, err = run(capsys, *argv)
        assert code == 1 and out == ""
        if argv[0] != "eval":
            assert "ships no face recogniser yet" in err and "--model" in err, err
        assert err.count("\n") == 1, "one-line error"


@pytest.fixture(scope="module")
def sface(tmp_path_factory):
    need_module("onnx")
    need_module("onnxruntime")  # the YuNet detector runs in onnxruntime
    need(YUNET_S)
    from picoface import modelfile
    from picoface.convert import convert_onnx

    path = tmp_path_factory.mktemp("models") / "sface.pface"
    modelfile.save(path, convert_onnx(need(SFACE), task="embed", preset="sface"))
    return path


@pytest.fixture(scope="module")
def people():
    """Image paths of the first three CelebA identities with at least three photos."""
    labels = need(CELEBA / "labels.tsv")
    by_id = defaultdict(list)
    for line in labels.read_text().splitlines()[1:]:
        image, ident = line.split("\t")
        by_id[ident].append(CELEBA / image)
    return [v for v in by_id.values() if len(v) >= 3][:3]


def opts(sface):
    return ["--model", sface, "--detector", YUNET_S]


def test_verify_same_and_different(capsys, sface, people):
    code, out, err = run(capsys, "verify", people[0][0], people[0][1], *opts(sface),
                         "--threshold", "0.3", "--json")
    assert code == 0, err
    same = json.loads(out)
    assert same["same"] is True and same["threshold"] == 0.3 and same["embedder_id"].startswith("sha256:")
    code, out, err = run(capsys, "verify", people[0][0], people[1][0], *opts(sface), "--threshold", "0.3")
    assert code == 0, err
    assert out.startswith("different people: cosine") and "< threshold 0.3000" in out
    assert same["score"] > float(out.split("cosine ")[1].split()[0])


def test_no_face_and_several_faces_messages(capsys, sface, people, tmp_path):
    cv2 = need_module("cv2")
    blank = tmp_path / "blank.jpg"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 127, np.uint8))
    code, _, err = run(capsys, "verify", blank, people[0][0], *opts(sface))
    assert code == 1 and err == f"picoface: error: {blank}: no face found\n"
    gallery = tmp_path / "g.pfg"
    code, _, err = run(capsys, "enroll", "crowd", need(GROUP), *opts(sface), "--gallery", gallery)
    assert code == 1 and "faces found, expected one" in err and "--largest" in err
    assert err.count("\n") == 1 and not gallery.exists()  # nothing enrolled
    code, out, err = run(capsys, "identify", blank, *opts(sface), "--gallery", gallery)
    assert code == 1 and "gallery not found" in err


def test_enroll_identify_round_trip(capsys, sface, people, tmp_path):
    gallery = tmp_path / "g.pfg"
    for i, person in enumerate(people):
        code, out, err = run(capsys, "enroll", f"person{i}", *person[:2], *opts(sface),
                             "--gallery", gallery, "--storage", "int8", "--json")
        assert code == 0, err
        assert json.loads(out)["enrolled"] == 2
    g = Gallery.load(gallery)
    assert g.names() == ["person0", "person1", "person2"] and g.rows == 6 and g.storage == "int8"
    annotated = tmp_path / "out.jpg"
    for i, person in enumerate(people):
        code, out, err = run(capsys, "identify", person[2], *opts(sface), "--gallery", gallery,
                             "--json", "--top-k", "3", "--output", annotated)
        assert code == 0, err
        rep = json.loads(out)
        assert len(rep["faces"]) >= 1
        assert rep["faces"][0]["matches"][0]["name"] == f"person{i}", rep
        assert len(rep["faces"][0]["matches"]) == 3  # no threshold recorded: all ranked
    assert annotated.stat().st_size > 0
    # A gallery made with one recogniser is refused by another.
    Gallery(embedder_id="sha256:0000000000000000").save(tmp_path / "other.pfg")
    code, _, err = run(capsys, "identify", people[0][2], *opts(sface), "--gallery",
                       tmp_path / "other.pfg")
    assert code == 1 and "was made with embedder" in err


def test_eval_verify_on_a_small_pairs_file(capsys, sface, people, tmp_path):
    rows = ["fold\timage_a\timage_b\tsame"]
    rel = lambda p: str(p.relative_to(CELEBA))  # noqa: E731
    for fold in range(2):
        rows.append(f"{fold}\t{rel(people[fold][0])}\t{rel(people[fold][1])}\t1")
        rows.append(f"{fold}\t{rel(people[fold][0])}\t{rel(people[2][fold])}\t0")
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("\n".join(rows) + "\n")
    code, out, err = run(capsys, "eval", "verify", "--pairs", pairs, "--images", CELEBA,
                         *opts(sface), "--json", "--flip")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["pairs"] == 4 and rep["accuracy"] == 1.0 and rep["flip"] is True
    assert {"accuracy_std", "tar_at_far_1e-3", "undetected_images", "failed_pairs"} <= set(rep)
    assert rep["folds"] == [0, 1]
    code, out, err = run(capsys, "eval", "verify", "--pairs", pairs, "--images", CELEBA,
                         *opts(sface), "--json", "--folds", "0,1,7")
    assert code == 0, err
    assert json.loads(out)["pairs"] == 4
    code, out, err = run(capsys, "eval", "verify", "--pairs", pairs, "--folds", "5-6", "--json")
    assert code == 1 and "no pairs in folds 5-6" in err, err


def test_match_threshold_from_the_model_file(capsys, sface, people, tmp_path):
    from picoface import FaceEmbedder

    calibrated = tmp_path / "sface_t.pface"
    code, _, err = run(capsys, "convert", SFACE, "--task", "embed", "--preset", "sface",
                       "--match-threshold", "0.38@celeba FAR=1e-3", "-o", calibrated)
    assert code == 0, err
    emb = FaceEmbedder(calibrated)
    assert emb.threshold == pytest.approx(0.38)
    assert emb.id == FaceEmbedder(sface).id  # same weights, same id
    code, out, err = run(capsys, "verify", people[0][0], people[0][1], "--model", calibrated,
                         "--detector", YUNET_S, "--json")
    assert code == 0, err
    assert json.loads(out)["threshold"] == pytest.approx(0.38)
    rows = ["fold\timage_a\timage_b\tsame", f"0\t{people[0][0]}\t{people[0][1]}\t1",
            f"1\t{people[0][0]}\t{people[1][0]}\t0"]
    (tmp_path / "pairs.tsv").write_text("\n".join(rows) + "\n")
    code, out, err = run(capsys, "eval", "verify", "--pairs", tmp_path / "pairs.tsv", "--model",
                         calibrated, "--detector", YUNET_S, "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["model_threshold"] == pytest.approx(0.38)
    assert rep["far_at_model_threshold"] == 0.0 and rep["tar_at_model_threshold"] == 1.0
    code, _, err = run(capsys, "convert", SFACE, "--task", "embed", "--match-threshold", "high",
                       "-o", tmp_path / "x.pface")
    assert code == 1 and "expected --match-threshold as T or T@NOTE" in err
