"""EdgeFace-style recognisers (models/edgeface.py): sizes against the paper, forward shape,
export to ONNX and .pface, and the native engine against PyTorch."""

import numpy as np
import pytest

from conftest import export_tool, need_module

torch = need_module("torch")


def _edgeface():
    export_tool("export_edgeface")  # puts the repository on sys.path, skips without onnxscript
    from models import edgeface
    return edgeface


def _randomised(model, seed: int = 0):
    """``model`` with every parameter and BN statistic random, so that each block (whose layer
    scale starts at 1e-6) contributes and the comparison sees the whole graph."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
    return model.eval()


@pytest.mark.parametrize("name, params, mflops", [("edgeface_xs", 1_769_404, 153.8),
                                                  ("edgeface_xxs", 1_244_328, 94.6)])
def test_sizes_match_the_paper(name, params, mflops):
    ef = _edgeface()
    model = ef.build(name)
    published_params, published_flops = ef.PUBLISHED[name]
    assert ef.count_params(model) == params
    assert abs(params - published_params) / published_params < 0.005
    flops = 2 * ef.count_macs(model) / 1e6
    assert flops == pytest.approx(mflops, abs=0.05)
    assert abs(flops * 1e6 - published_flops) / published_flops < 0.005


def test_loralin_rank_and_layers():
    ef = _edgeface()
    assert ef.lowrank_rank(100, 400, 0.6) == 60
    assert ef.lowrank_rank(3, 1, 0.6) == 2
    low = ef.linear(64, 256, 0.6)
    assert [tuple(c.weight.shape[:2]) for c in low] == [(38, 64), (256, 38)]
    assert isinstance(ef.linear(64, 256, 0.0), torch.nn.Conv2d)


def test_forward_shape_and_one_training_step():
    ef = _edgeface()
    torch.manual_seed(0)
    model = ef.edgeface_xxs().train()
    x = torch.randn(3, 3, 112, 112)
    out = model(x)
    assert out.shape == (3, 512)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.head.weight.detach().clone()
    (out ** 2).mean().backward()
    opt.step()
    assert not torch.equal(before, model.head.weight)
    with pytest.raises(ValueError, match="112x112"):
        model(torch.randn(1, 3, 96, 96))


def test_fourier_features_are_bounded_and_distinct():
    ef = _edgeface()
    f = ef.fourier_features(14, 14)
    assert f.shape == (1, 64, 14, 14)
    assert float(f.abs().max()) <= 1.0
    flat = f[0].reshape(64, -1).T
    assert len(torch.unique(flat, dim=0)) == 14 * 14  # every position encoded differently


@pytest.mark.parametrize("name", ["edgeface_xs", "edgeface_xxs"])
def test_native_engine_matches_pytorch(name, tmp_path):
    tool = export_tool("export_edgeface")
    ef = _edgeface()
    from picoface import FaceEmbedder, modelfile
    model = _randomised(ef.build(name))
    onnx_path = tool.export_onnx(model, tmp_path / f"{name}.onnx")
    pface = tool.to_pface(onnx_path, tmp_path / f"{name}.pface", name,
                          match_threshold="0.3@test")
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 112, 112)).astype(np.float32)
    with torch.no_grad():
        scale = float(model(torch.from_numpy(x)).abs().max())
    for backend, path in (("onnxruntime", onnx_path), ("native", pface)):
        err = tool.max_abs_error(model, path, x, backend)
        assert err <= 1e-4 * max(1.0, scale), f"{backend}: max error {err:.3g} (outputs up to {scale:.3g})"
    meta = modelfile.summary(pface)["metadata"]
    assert meta["task"] == "embed" and meta["architecture"] == name
    assert meta["input.color"] == "rgb" and meta["input.mean"] == [127.5] * 3
    assert meta["input.std"] == [127.5] * 3 and meta["input.size"] == [112, 112]
    assert meta["embed.dim"] == 512 and len(meta["align.template"]) == 10
    assert meta["threshold.match"] == pytest.approx(0.3)
    emb = FaceEmbedder(pface)(np.zeros((2, 112, 112, 3), np.uint8))
    assert emb.shape == (2, 512) and emb.dtype == np.float32
    embedder = FaceEmbedder(pface)
    assert embedder.threshold == pytest.approx(0.3)
    assert embedder.template.shape == (5, 2) and embedder.template_size == (112, 112)


def test_training_pieces_one_step(rng, tmp_path):
    tool = export_tool("train_recognizer")
    crop = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    for seed in range(8):
        img, flipped = tool.augment(np.random.default_rng(seed), crop)
        assert img.shape == (112, 112, 3) and img.dtype == np.float32
        assert 0 <= img.min() and img.max() <= 255
    x = tool.to_tensor(np.stack([crop, crop]).astype(np.float32))
    assert x.shape == (2, 3, 112, 112) and -1 <= float(x.min()) and float(x.max()) <= 1
    # Channel 0 of the model input is red: BGR's last channel.
    assert float(x[0, 0, 5, 7]) == pytest.approx((crop[5, 7, 2] - 127.5) / 127.5)

    torch.manual_seed(0)
    model = _edgeface().edgeface_xxs().train()
    heads = tool.Heads(classes=5)
    teacher = torch.nn.functional.normalize(torch.randn(4, 128), dim=1)
    labels = torch.tensor([0, 3, -1, 4])
    parts = tool.losses(model(torch.randn(4, 3, 112, 112)), labels, teacher, heads)
    assert set(parts) == {"cosface", "distil", "relational"}
    assert all(torch.isfinite(v) and float(v) > 0 for v in parts.values())
    ema = tool.Ema(model)
    opt = tool.make_optimizer(torch.nn.ModuleList([model, heads]), 1e-3, 0.05)
    assert tool.optimizer_step(model, ema, opt, sum(parts.values()), 1e-3, 0, clip=5.0) == 1
    assert heads.centres.grad.abs().sum() > 0 and heads.proj.weight.grad.abs().sum() > 0
    args = tool.parse(["--out", str(tmp_path)])
    tool.save(tmp_path / "last.pt", model, ema, heads, opt, 1, 2.5, args)
    again = _edgeface().edgeface_xxs()
    again_ema = tool.Ema(again)
    again_heads = tool.Heads(5)
    again_opt = tool.make_optimizer(torch.nn.ModuleList([again, again_heads]), 1e-3, 0.05)
    step, spent = tool.resume(tool.log, tmp_path / "last.pt", again, again_ema, again_opt,
                              extra={"heads": again_heads})
    assert (step, spent) == (1, 2.5)
    assert torch.equal(again.head.weight, model.head.weight)
    assert torch.equal(again_heads.proj.weight, heads.proj.weight)
    assert torch.equal(again_ema.model.head.weight, ema.model.head.weight)
    # The unlabelled row (-1) stays out of the margin loss.
    emb = torch.randn(4, 512)
    moved = emb.clone()
    moved[2] += 5
    assert float(tool.losses(emb, labels, teacher, heads)["cosface"]) == \
        pytest.approx(float(tool.losses(moved, labels, teacher, heads)["cosface"]))
