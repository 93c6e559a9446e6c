"""Priors, head decoding and NMS against plain numpy implementations on random inputs."""

import numpy as np
import pytest

from picoface import _core


def np_points(w, h, strides, per_cell, offset):
    out = []
    for s in strides:
        gw, gh = -(-w // s), -(-h // s)
        for r in range(gh):
            for c in range(gw):
                out += [[(c + offset) * s, (r + offset) * s, s]] * per_cell
    return np.float32(out)


def test_anchor_points_and_boxes():
    pts = _core.anchor_points(100, 60, [8, 16, 32], 2, 0.5)
    np.testing.assert_array_equal(pts, np_points(100, 60, [8, 16, 32], 2, 0.5))
    boxes = _core.anchor_boxes(64, 48, [8, 16], [[16, 32], [64]], 0.5)
    assert boxes.shape == ((8 * 6) * 2 + (4 * 3) * 1, 4)
    np.testing.assert_array_equal(boxes[:3], [[4, 4, 16, 16], [4, 4, 32, 32], [12, 4, 16, 16]])
    np.testing.assert_array_equal(boxes[96], [8, 8, 64, 64])


def np_yunet(points, cls, obj, bbox, kps, thr):
    score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1)).ravel()
    keep = score >= thr
    p, s = points[:, :2], points[:, 2:3]
    c = p + bbox[:, :2] * s
    wh = np.exp(bbox[:, 2:]) * s
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1)
    lm = (p[:, None] + kps.reshape(-1, 5, 2) * s[:, None])
    return boxes[keep], score[keep], lm[keep]


def np_distance(points, score, dist, kps, thr):
    keep = score >= thr
    p, s = points[:, :2], points[:, 2:3]
    boxes = np.concatenate([p - dist[:, :2] * s, p + dist[:, 2:] * s], 1)
    lm = p[:, None] + kps.reshape(-1, 5, 2) * s[:, None]
    return boxes[keep], score[keep], lm[keep]


def np_deltas(anchors, score, loc, landm, v0, v1, thr):
    keep = score >= thr
    c = anchors[:, :2] + loc[:, :2] * v0 * anchors[:, 2:]
    wh = anchors[:, 2:] * np.exp(loc[:, 2:] * v1)
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1)
    lm = anchors[:, None, :2] + landm.reshape(-1, 5, 2) * v0 * anchors[:, None, 2:]
    return boxes[keep], score[keep], lm[keep]


def check(got, want):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-3)


def test_decoders_match_numpy(rng):
    pts = _core.anchor_points(320, 240, [8, 16, 32], 1, 0.0)
    n = len(pts)
    cls, obj = rng.random(n, np.float32), rng.random(n, np.float32)
    bbox = rng.normal(0, 0.5, (n, 4)).astype(np.float32)
    kps = rng.normal(0, 2, (n, 10)).astype(np.float32)
    check(_core.decode_yunet(pts, cls, obj, bbox, kps, 5, 0.6), np_yunet(pts, cls, obj, bbox, kps, 0.6))

    score = rng.random(n, np.float32)
    dist = rng.random((n, 4), np.float32) * 4
    check(_core.decode_distance(pts, score, dist, kps, 5, 0.7), np_distance(pts, score, dist, kps, 0.7))

    anchors = _core.anchor_boxes(320, 240, [8, 16, 32], [[16, 32], [64, 128], [256, 512]], 0.5)
    m = len(anchors)
    score, loc = rng.random(m, np.float32), rng.normal(0, 1, (m, 4)).astype(np.float32)
    landm = rng.normal(0, 1, (m, 10)).astype(np.float32)
    check(_core.decode_anchor_deltas(anchors, score, loc, landm, 5, 0.1, 0.2, 0.8),
          np_deltas(anchors, score, loc, landm, 0.1, 0.2, 0.8))

    unit = rng.random((m, 4), np.float32)
    keep = score >= 0.8
    check(_core.decode_unit_boxes(score, unit, 5, 320.0, 240.0, 0.8),
          (unit[keep] * np.float32([320, 240, 320, 240]), score[keep],
           np.zeros((keep.sum(), 5, 2), np.float32)))


def np_iou(a, b):
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: np.clip(r[..., 2] - r[..., 0], 0, None) * np.clip(r[..., 3] - r[..., 1], 0, None)
    uni = area(a) + area(b) - inter
    return np.where(uni > 0, inter / np.where(uni > 0, uni, 1), 0)


def np_greedy(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(np_iou(boxes[j], boxes[i:i + 1])[0] <= thr for j in keep):
            keep.append(i)
    return keep


def random_boxes(rng, n):
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    return np.float32(np.concatenate([xy, xy + wh], 1)), rng.random(n).astype(np.float32)


@pytest.mark.parametrize("n", [0, 1, 2, 50, 300])
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 0.9])
def test_greedy_nms_matches_numpy(rng, n, thr):
    boxes, scores = random_boxes(rng, n)
    keep, _ = _core.nms(boxes, scores, thr, "greedy", 0.5, 0.0, 0, 0)
    assert keep.tolist() == np_greedy(boxes, scores, thr)


def test_nms_top_k_and_max_keep(rng):
    boxes, scores = random_boxes(rng, 200)
    full, _ = _core.nms(boxes, scores, 0.4, "greedy", 0.5, 0.0, 0, 0)
    capped, _ = _core.nms(boxes, scores, 0.4, "greedy", 0.5, 0.0, 0, 5)
    assert capped.tolist() == full[:5].tolist()
    top, _ = _core.nms(boxes, scores, 0.4, "greedy", 0.5, 0.0, 20, 0)
    best20 = np.argsort(-scores, kind="stable")[:20]
    assert set(top.tolist()) <= set(best20.tolist())


def np_soft(boxes, scores, method, thr, sigma, min_score):
    s = scores.astype(np.float64).copy()
    live, keep = list(range(len(s))), []
    while live:
        m = max(live, key=lambda i: (s[i], -i))
        live.remove(m)
        keep.append(m)
        if live:
            ov = np_iou(boxes[m], boxes[live])
            decay = np.where(ov > thr, 1 - ov, 1.0) if method == "soft_linear" else np.exp(-ov ** 2 / sigma)
            s[live] *= decay
            live = [i for i in live if s[i] >= min_score]
    return keep, s


@pytest.mark.parametrize("method", ["soft_linear", "soft_gaussian"])
def test_soft_nms_matches_numpy(rng, method):
    boxes, scores = random_boxes(rng, 80)
    keep, s = _core.nms(boxes, scores, 0.3, method, 0.5, 0.05, 0, 0)
    want_keep, want_s = np_soft(boxes, scores, method, 0.3, 0.5, 0.05)
    assert keep.tolist() == want_keep
    np.testing.assert_allclose(s[keep], want_s[keep], rtol=1e-4)


def test_finish_maps_back_through_letterbox():
    box = _core.letterbox(200, 100, 64, 64, "keep_aspect")  # scale 0.32, content 64x32
    boxes = np.float32([[6.4, 3.2, 32, 16]])
    lm = np.tile(np.float32([[3.2, 6.4]]), (1, 5, 1))
    b, s, l = _core.finish_detections(boxes, np.float32([0.9]), lm, box, 0.4, "greedy", 0.5, 0, 0, 0)
    np.testing.assert_allclose(b, [[20, 10, 100, 50]], rtol=1e-5)
    np.testing.assert_allclose(l[0, 0], [10, 20], rtol=1e-5)


def test_nms_rejects_bad_threshold():
    with pytest.raises(ValueError, match="nms_threshold"):
        _core.nms(np.zeros((1, 4), np.float32), np.ones(1, np.float32), 1.5, "greedy", 0.5, 0, 0, 0)
    with pytest.raises(ValueError, match="nms method"):
        _core.nms(np.zeros((1, 4), np.float32), np.ones(1, np.float32), 0.5, "fancy", 0.5, 0, 0, 0)
