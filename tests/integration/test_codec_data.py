"""The codec-degraded pair builder: real x264 sequences, deterministic, resumable, the product's reduction."""

from __future__ import annotations

import dataclasses
import json
import re
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from PIL import Image

import kernels
from vsr_plugin.measure import metrics
from encoder.training.codec_data import DegradeSpec, build_cache, code_sequence, load_cache
from encoder.training.tasks import SRTask, _to_planes, _upscale
from encoder.training.train import config_from_args, main, train
from tests.conftest import smooth_rgb
from vsr_plugin.engine import Resizer, Upscaler
from vsr_plugin.models import load_upsampler

SPEC = DegradeSpec(size=64, frames=6, speed=3, crf=(20, 40), clean_fraction=0.3, pixels_per_sequence=8000)


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    sizes = [(128, 160), (97, 131), (48, 48)]  # an odd size, and one too small for a window
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(smooth_rgb(h, w, seed=40 + i)).save(root / f"p{i}.png")
    return sorted(root.glob("*.png"))


def _arrays(shards):
    out = []
    for shard in shards:
        with np.load(shard) as z:
            out.append({k: z[k].copy() for k in z.files})
    return out


def test_cache_is_deterministic_and_resumes(photos, tmp_path):
    a = build_cache(photos, SPEC, tmp_path / "a", quiet=True)
    b = build_cache(photos, SPEC, tmp_path / "b", quiet=True)
    assert [s.name for s in a] == [s.name for s in b] == ["photos_p0.npz", "photos_p1.npz", "photos_p2.npz"]
    first = _arrays(a)
    for x, y in zip(first, _arrays(b)):
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    # a stopped build: one shard missing and a photo list in another order -> the same bytes
    a[1].unlink()
    again = build_cache(photos[::-1], SPEC, tmp_path / "a", quiet=True)[::-1]
    for x, y in zip(first, _arrays(again)):
        assert all(np.array_equal(x[k], y[k]) for k in x)
    # another seed, another cache
    other = build_cache(photos, dataclasses.replace(SPEC, seed=1), tmp_path / "a", quiet=True)
    assert other[0].parent != a[0].parent


def test_a_crf_range_keeps_its_sequences_and_the_uncoded_ones(photos, tmp_path):
    shards = build_cache(photos, SPEC, tmp_path, quiet=True)
    crfs = np.concatenate([z["crf"] for z in _arrays(shards)])
    assert sorted(crfs.tolist()) == [-1, -1, -1, 23, 24]
    name_crf = lambda pair: int(re.search(r"-crf(-?\d+)-", pair.name).group(1))  # noqa: E731
    kept = load_cache(shards, crf=(20, 23))
    assert sorted({name_crf(p) for p in kept}) == [-1, 23] and len(kept) == 4 * SPEC.frames
    assert len(load_cache(shards)) == SPEC.frames * len(crfs)


def test_pairs_are_the_products_reduction_through_the_codec(photos, tmp_path):
    shards = build_cache(photos, SPEC, tmp_path, quiet=True)
    z = _arrays(shards)
    assert len(z[2]["crf"]) == 0  # 48x48 photo: no window fits
    n0 = round(128 * 160 / SPEC.pixels_per_sequence)
    assert z[0]["hr_y"].shape == (n0, 6, 64, 64) and z[0]["hr_u"].shape == (n0, 6, 32, 32)
    assert z[0]["lr_y"].shape == (n0, 6, 32, 32) and z[0]["lr_v"].shape == (n0, 6, 16, 16)
    crfs = np.concatenate([s["crf"] for s in z[:2]])
    assert set(crfs.tolist()) - {-1} <= set(range(20, 41)) and (crfs == -1).any() and (crfs >= 0).any()
    for s in z[:2]:
        for k, crf in enumerate(s["crf"]):
            hr = tuple(torch.from_numpy(s[f"hr_{c}"][k]) for c in "yuv")
            base = kernels.unpack_downscale(torch.zeros(6, 6, 16, 16), *hr, bits=8, backend="torch")
            lr = s["lr_y"][k]
            if crf == -1:  # clean: exactly the bicubic reduction the product's encoder side makes
                assert all(np.array_equal(b.numpy(), s[f"lr_{c}"][k]) for b, c in zip(base, "yuv"))
            else:  # coded: close to it, not equal
                p = metrics.psnr(lr, base[0].numpy())
                assert 20.0 < p < 60.0, p
    # the window pans: first and last HR frames of a sequence differ
    assert any(not np.array_equal(s["hr_y"][k, 0], s["hr_y"][k, -1]) for s in z[:2] for k in range(len(s["crf"])))
    pairs = load_cache(shards)
    assert len(pairs) == sum(len(s["crf"]) for s in z) * 6
    assert pairs[0].hr.y.shape == (64, 64) and pairs[0].lr.y.shape == (32, 32)


def test_the_two_thirds_layer_has_its_own_cache_of_the_products_reduction(photos, tmp_path):
    spec = dataclasses.replace(SPEC, size=72, layer="two-thirds")
    shards = build_cache(photos, spec, tmp_path / "a", quiet=True)
    assert shards[0].parent != build_cache(photos[:1], SPEC, tmp_path / "a", quiet=True)[0].parent
    z = _arrays(shards)
    assert z[0]["hr_y"].shape[1:] == (6, 72, 72) and z[0]["hr_u"].shape[1:] == (6, 36, 36)
    assert z[0]["lr_y"].shape[1:] == (6, 48, 48) and z[0]["lr_v"].shape[1:] == (6, 24, 24)
    crfs = np.concatenate([s["crf"] for s in z[:2]])
    assert (crfs == -1).any() and (crfs >= 0).any()
    for s in z[:2]:
        for k, crf in enumerate(s["crf"]):
            hr = tuple(torch.from_numpy(s[f"hr_{c}"][k]) for c in "yuv")
            base = Resizer.two_thirds_layer(72, 72, device="cpu").resize_planes(*hr, bits=8)
            if crf == -1:  # clean: exactly vsr-transcode's 2/3 reduction (Lanczos-3)
                assert all(np.array_equal(b.numpy(), s[f"lr_{c}"][k]) for b, c in zip(base, "yuv"))
            else:
                assert 20.0 < metrics.psnr(s["lr_y"][k], base[0].numpy()) < 60.0
    again = _arrays(build_cache(photos, spec, tmp_path / "b", quiet=True))
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(z, again) for k in x)
    assert json.loads((shards[0].parent / "spec.json").read_text())["layer"] == "two-thirds"


def test_the_half_layers_cache_keys_are_unchanged():
    """Adding the layer to the spec keeps the 2x layer's caches (built before it) where they were."""
    spec = DegradeSpec(crf=(16, 40), size=192, rescales=(0.8, 0.6))
    assert spec.key == "x264-b5c385f74c50"
    assert dataclasses.replace(spec, codec="x265", rescales=(), seed=1).key == "x265-4f9f391c265e"
    assert dataclasses.replace(spec, layer="two-thirds").key != spec.key
    with pytest.raises(ValueError, match="multiple of 12"):
        DegradeSpec(size=64, layer="two-thirds")


def test_two_thirds_training_restores_as_vsr_transcode_does(image_dir, tmp_path):
    argv = ["--model", "fast", "--crop", "48", "--batch", "4", "--val-count", "2", "--samples", "1",
            "--warmup", "2", "--ema", "0", "--threads", "1", "--data", str(image_dir), "--out", str(tmp_path / "run"),
            "--cache", str(tmp_path / "cache"), "--steps", "4", "--epoch-steps", "2", "--degradation", "x264",
            "--degrade-crf", "25,35", "--degrade-window", "72", "--layer", "two-thirds"]
    result = train(config_from_args(argv))
    assert result.step == 4 and result.summary["config"]["layer"] == "two-thirds"
    task = SRTask(config_from_args(argv), torch.device("cpu"))
    net, _ = load_upsampler(tmp_path / "run" / "best")
    pair = load_cache(sorted((tmp_path / "cache").glob("x264-*/*.npz")))[0]
    lr = _to_planes(pair.lr, torch.device("cpu"))
    assert pair.lr.y.shape == (48, 48) and pair.hr.y.shape == (72, 72)
    # validation's picture is the engine's 2/3 restore, sample for sample
    engine = Upscaler(tmp_path / "run" / "best", device="cpu", dtype="fp32", backend="torch")
    want = engine.upscale_planes_to(*lr, bits=8, height=72, width=72)
    got = task.to_picture(_upscale(net.to(memory_format=torch.channels_last), lr, 2), lr)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    # training's loss sees the same picture, unrounded (bf16 off: within rounding of the codes)
    with torch.no_grad():
        restored = task.restore(net, lr, nullcontext())
    assert [tuple(p.shape) for p in restored] == [(1, 72, 72), (1, 36, 36), (1, 36, 36)]
    assert all((r - w.float()).abs().max() <= 1.5 for r, w in zip(restored, want))


def test_higher_crf_codes_worse():
    rgb = smooth_rgb(128, 128, seed=7)
    y = np.stack([np.asarray(Image.fromarray(rgb).convert("L"))[:64, k:k + 64] for k in range(0, 8, 2)])
    u = np.full((4, 32, 32), 128, np.uint8)
    quality = [metrics.psnr(code_sequence((y, u, u), "x264", "medium", crf)[0], y) for crf in (10, 30, 50)]
    assert quality[0] > quality[1] > quality[2]


@pytest.mark.parametrize("codecs", ["x264", "x264+x265"])
def test_training_on_coded_pairs(image_dir, tmp_path, codecs):
    argv = ["--model", "fast", "--crop", "32", "--batch", "4", "--val-count", "2", "--samples", "1",
            "--warmup", "2", "--ema", "0", "--threads", "1", "--data", str(image_dir), "--out", str(tmp_path / "run"),
            "--cache", str(tmp_path / "cache"), "--steps", "4", "--epoch-steps", "2", "--degradation", codecs,
            "--degrade-crf", "25,35"]
    result = train(config_from_args(argv))
    assert result.step == 4 and result.summary["config"]["degradation"] == codecs
    for codec in codecs.split("+"):  # each codec's cache: 10 training + 2 validation photos
        assert len(list((tmp_path / "cache").glob(f"{codec}-*/*.npz"))) == 12


@pytest.mark.parametrize("argv,message", [
    (["--degradation", "mpeg2"], "degradation must be one of"),
    (["--degradation", "x264", "--degrade-crf", "30"], "degrade_crf must be 'LOW,HIGH'"),
    (["--degradation", "x264", "--degrade-crf", "30,60"], "CRF range must satisfy"),
    (["--degradation", "x264", "--mode", "joint"], "applies to sr and gan modes"),
    (["--degradation", "x264", "--train-crf", "30,20"], "train_crf range '30,20' is empty"),
    (["--train-crf", "20,30"], "--train-crf selects coded training pairs"),
    (["--exclude", "nope"], "--exclude names images that are not in --data: nope"),
    (["--layer", "third"], "layer must be one of half, two-thirds"),
    (["--layer", "two-thirds"], "needs --degradation x264, x265 or x264+x265"),
    (["--layer", "two-thirds", "--degradation", "x264", "--crop", "64", "--degrade-window", "96"], "multiple of 6, got 64"),
    (["--layer", "two-thirds", "--degradation", "x264", "--crop", "48", "--degrade-window", "64"], "window must be a multiple of 12"),
])
def test_bad_degradation_is_one_clear_line(argv, message, image_dir, capsys):
    assert main(argv + ["--data", str(image_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
