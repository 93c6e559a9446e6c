"""End to end on a real public detector (YuNet-s through onnxruntime) and real images."""

import threading

import numpy as np
import pytest

import picoface

from conftest import (DLIB_FACES, FULLRES12, SCRFD, SFACE, ULTRA, YUNET_S, YUNET_S_320, box_iou,
                      fullres12_recall, need, need_module)


# Measured on this set (12 images, 131 faces), IoU 0.5, each head's default score threshold
# (found / faces, detections on a face / detections): YuNet-s dynamic 131/131, 131/137 (the
# rest mostly unannotated faces); SCRFD-500M-KPS at 640x640 130/131, 130/130; SCRFD-2.5G-KPS
# 131/131, 131/131; Ultra-Light at its fixed 320x240 (score 0.7) RFB 123/131, 123/125 and slim
# 119/131, 119/120 — the misses are faces under ~10 px at 320x240 (every face of 20 px or more
# there is found but one). Gates keep an honest margin below these; on-face fraction >= 0.9.
@pytest.mark.parametrize("model,head,min_recall", [
    (YUNET_S, "yunet", 0.95), (SCRFD / "scrfd_500m_kps.onnx", "scrfd", 0.95),
    (SCRFD / "scrfd_2.5g_kps.onnx", "scrfd", 0.95),
    (ULTRA / "version-RFB-320.onnx", "ultraface", 0.92),
    (ULTRA / "version-slim-320.onnx", "ultraface", 0.88)])
def test_recall_on_wider_fullres12(model, head, min_recall):
    need_module("onnxruntime")
    found, gts, matched, dets = fullres12_recall(picoface.FaceDetector(need(model), head=head))
    assert gts == 131
    assert found / gts >= min_recall, f"recall {found}/{gts}"
    assert matched / dets >= 0.9, f"{matched}/{dets} detections on a face"


def _dlib_boxes():
    import xml.etree.ElementTree as ET
    for name in ("training.xml", "testing.xml"):
        for image in ET.parse(need(DLIB_FACES / name)).getroot().iter("image"):
            xywh = np.float32([[float(b.get(k)) for k in ("left", "top", "width", "height")]
                               for b in image.iter("box") if b.get("ignore") != "1"])
            yield image.get("file"), np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)


@pytest.mark.parametrize("name", ["version-RFB-320", "version-slim-320"])
def test_ultraface_finds_the_larger_dlib_faces(name):
    # dlib's 43 hand-drawn boxes (37-90 px faces in 500x375 photos) are tight squares, hence
    # IoU 0.4. Measured: both Ultra-Light models find 43/43 with 43 detections (median IoU
    # 0.68 / 0.70; YuNet-s: 0.72).
    cv2 = need_module("cv2")
    need_module("onnxruntime")
    det = picoface.FaceDetector(need(ULTRA / f"{name}.onnx"), head="ultraface")
    found = total = dets = 0
    for file, gt in _dlib_boxes():
        faces = det(cv2.imread(str(DLIB_FACES / file)))
        for g in gt:
            found += bool(len(faces)) and box_iou(g, faces.boxes).max() >= 0.4
        total += len(gt)
        dets += len(faces)
    assert total == 43
    assert found >= 42 and dets <= 45, f"found {found}/{total} with {dets} detections"


def test_same_detections_as_opencv_face_detector_yn(yunet_model, wider_image):
    cv2 = need_module("cv2")
    if not hasattr(cv2, "FaceDetectorYN"):
        pytest.skip("this OpenCV has no FaceDetectorYN")
    h, w = wider_image.shape[:2]
    ref = cv2.FaceDetectorYN.create(str(yunet_model), "", (w, h), 0.5, 0.4, 5000)
    _, out = ref.detect(wider_image)
    out = out[np.argsort(-out[:, 14], kind="stable")]
    faces = picoface.FaceDetector(yunet_model, head="yunet")(wider_image)
    assert len(faces) == len(out) > 10
    ref_boxes = np.concatenate([out[:, :2], out[:, :2] + out[:, 2:4]], 1)
    np.testing.assert_allclose(faces.boxes, ref_boxes, atol=0.05)
    np.testing.assert_allclose(faces.landmarks, out[:, 4:14].reshape(-1, 5, 2), atol=0.05)
    np.testing.assert_allclose(faces.scores, out[:, 14], atol=1e-4)


def test_result_types_and_views(yunet_model, wider_image):
    faces = picoface.FaceDetector(yunet_model, head="yunet", max_faces=3)(wider_image)
    assert len(faces) == 3
    assert faces.boxes.dtype == faces.scores.dtype == faces.landmarks.dtype == np.float32
    assert faces.boxes.shape == (3, 4) and faces.landmarks.shape == (3, 5, 2)
    assert list(faces.scores) == sorted(faces.scores, reverse=True)
    first = next(iter(faces))
    assert first.score == float(faces.scores[0]) and first.box.shape == (4,)
    with pytest.raises(Exception):
        faces.boxes = None  # frozen


def test_every_isa_gives_the_same_faces(yunet_model, wider_image, isa):
    det = picoface.FaceDetector(yunet_model, head="yunet")
    faces = det(wider_image)
    picoface.set_isa("scalar")
    ref = det(wider_image)
    assert len(faces) == len(ref)
    np.testing.assert_allclose(faces.boxes, ref.boxes, atol=1e-2)


def test_rgb_and_gray_inputs(yunet_model, wider_image):
    cv2 = need_module("cv2")
    det = picoface.FaceDetector(yunet_model, head="yunet")
    bgr = det(wider_image)
    rgb = det(np.ascontiguousarray(wider_image[:, :, ::-1]), color="rgb")
    np.testing.assert_allclose(rgb.boxes, bgr.boxes, atol=1e-3)
    gray = det(cv2.cvtColor(wider_image, cv2.COLOR_BGR2GRAY), color="gray")
    assert len(gray) >= 0.8 * len(bgr)


def test_input_size_letterbox_and_fixed_model(yunet_model, wider_image):
    full = picoface.FaceDetector(yunet_model, head="yunet")(wider_image)
    small = picoface.FaceDetector(yunet_model, head="yunet", input_size=(640, 640))(wider_image)
    # The big faces of this group photo survive a 1.6x downscale at the same places.
    assert len(small) >= 10
    for b in small.boxes:
        assert box_iou(b, full.boxes).max() >= 0.5
    fixed = picoface.FaceDetector(need(YUNET_S_320), head="yunet")
    assert len(fixed(wider_image)) >= 5
    with pytest.raises(ValueError, match="fixed-size model"):
        picoface.FaceDetector(YUNET_S_320, head="yunet", input_size=(640, 480))


def test_model_from_bytes(yunet_model, wider_image):
    a = picoface.FaceDetector(yunet_model.read_bytes(), head="yunet")(wider_image)
    b = picoface.FaceDetector(yunet_model, head="yunet")(wider_image)
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_two_threads_match_serial(yunet_model):
    cv2 = need_module("cv2")
    paths = sorted((need(FULLRES12) / "images").glob("*.jpg"))[:6]
    images = [cv2.imread(str(p)) for p in paths]
    det = picoface.FaceDetector(yunet_model, head="yunet")
    serial = [det(im) for im in images]
    results = [[None] * len(images) for _ in range(2)]

    def work(k):
        for _ in range(3):
            for i, im in enumerate(images):
                results[k][i] = det(im)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(2):
        for got, want in zip(results[k], serial):
            np.testing.assert_array_equal(got.boxes, want.boxes)
            np.testing.assert_array_equal(got.landmarks, want.landmarks)


def test_tiny_images_give_no_crash(yunet_model):
    det = picoface.FaceDetector(yunet_model, head="yunet")
    for shape in ((1, 1, 3), (2, 5, 3), (33, 1, 3)):
        faces = det(np.zeros(shape, np.uint8))
        assert len(faces) == 0


def test_analyzer_embeds_each_face(yunet_model, wider_image):
    need_module("onnxruntime")
    emb = picoface.FaceEmbedder(need(SFACE), preset="sface")
    det = picoface.FaceDetector(yunet_model, head="yunet", max_faces=4)
    faces = picoface.FaceAnalyzer(det, emb)(wider_image)
    assert faces.embeddings.shape == (4, 128)
    np.testing.assert_allclose(np.linalg.norm(faces.embeddings, axis=1), 1.0, rtol=1e-5)
    sim = picoface.cosine(faces.embeddings, faces.embeddings)
    off = sim[~np.eye(4, dtype=bool)]
    # Different people in one photo: clearly below SFace's published 0.363 match threshold;
    # the same crop twice: identical.
    assert off.max() < 0.363 and np.allclose(np.diag(sim), 1.0, atol=1e-5)
    again = emb(picoface.align(wider_image, faces))
    np.testing.assert_allclose(again, faces.embeddings, atol=1e-5)


def test_soft_nms_keeps_the_greedy_faces(yunet_model, wider_image):
    greedy = picoface.FaceDetector(yunet_model, head="yunet")(wider_image)
    soft = picoface.FaceDetector(yunet_model, head="yunet", nms_method="soft_gaussian")(wider_image)
    assert len(soft) >= len(greedy)
    for b in greedy.boxes:
        assert box_iou(b, soft.boxes).max() > 0.99
    assert (soft.scores >= 0.5).all()


@pytest.mark.parametrize("model,head", [
    (YUNET_S, "yunet"), (SCRFD / "scrfd_500m_kps.onnx", "scrfd"),
    (ULTRA / "version-RFB-320.onnx", "ultraface"), (ULTRA / "version-slim-320.onnx", "ultraface")])
def test_native_backend_matches_onnxruntime(model, head, wider_image, tmp_path):
    # The .pface file (importer passes: BN folding, activation fusion) run by the native
    # engine gives the raw outputs onnxruntime gives on the ONNX original (max relative error
    # 1e-4) on the same preprocessed frame, and the same faces: boxes within 0.5 px.
    need_module("onnx")
    need_module("onnxruntime")
    from picoface import modelfile
    from picoface.convert import convert_onnx
    pface = modelfile.save(tmp_path / "m.pface", convert_onnx(need(model), task="detect", head=head))
    native = picoface.FaceDetector(pface)  # head, input convention and thresholds from the file
    assert native.backend == "native" and native.head.name == head
    onnx_det = picoface.FaceDetector(model, head=head)
    assert (native.score_threshold, native.nms_threshold) == (onnx_det.score_threshold,
                                                              onnx_det.nms_threshold)
    x, _ = native.preprocess(wider_image)
    np.testing.assert_array_equal(x, onnx_det.preprocess(wider_image)[0])
    want, got_raw = onnx_det._net.run(x), native._net.run(x)
    assert set(want) == set(got_raw)
    for name, r in want.items():
        # A score map with no face at its stride peaks near 1e-3 (YuNet obj_32 here): its
        # error is judged against a 0.01 score rather than that near-zero peak.
        err = float(np.abs(got_raw[name] - r).max()) / max(1e-2, float(np.abs(r).max()))
        assert err <= 1e-4, f"{model.name} output {name}: max relative error {err:.3g}"
    ref = onnx_det(wider_image)
    got = native(wider_image)
    assert len(got) == len(ref) > 10
    np.testing.assert_allclose(got.boxes, ref.boxes, atol=0.5)
    np.testing.assert_allclose(got.landmarks, ref.landmarks, atol=0.5)
    np.testing.assert_allclose(got.scores, ref.scores, atol=1e-3)


def test_native_embedder_matches_onnxruntime(yunet_model, wider_image, tmp_path):
    need_module("onnx")
    from picoface import modelfile
    from picoface.convert import convert_onnx
    pface = modelfile.save(tmp_path / "sface.pface",
                           convert_onnx(need(SFACE), task="embed", preset="sface"))
    faces = picoface.FaceDetector(yunet_model, head="yunet", max_faces=3)(wider_image)
    crops = picoface.align(wider_image, faces)
    native = picoface.FaceEmbedder(pface)
    assert native.backend == "native" and native.spec.color == "rgb"
    ref = picoface.FaceEmbedder(SFACE, preset="sface")(crops)
    got = native(crops)
    assert (np.sum(got * ref, axis=1) > 0.9999).all()
