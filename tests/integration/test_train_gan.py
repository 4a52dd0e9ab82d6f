"""vsr-train --mode gan: spectral norm, accumulation, a real run, DDP agreement, resume, config errors."""

import json
import os
import subprocess
import sys
from contextlib import nullcontext

import pytest
import torch

from encoder.training.gan import GANTask, MultiScaleDiscriminator, refresh_spectral_norm
from encoder.training.train import TrainConfig, config_from_args, main, train
from tests.conftest import REPO
from vsr_plugin.models import load_upsampler

TINY_GAN = ["--mode", "gan", "--init", "x2-fast", "--model", "fast", "--crop", "32", "--batch", "4",
            "--val-count", "2", "--samples", "1", "--warmup", "2", "--lr", "1e-3", "--ema", "0", "--threads", "1",
            "--gan-scales", "2", "--gan-channels", "8", "--amp", "none"]


def _planes(n, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(0, 256, (n, hh, ww), generator=g, dtype=torch.uint8)
                 for hh, ww in ((h, w), ((h + 1) // 2, (w + 1) // 2), ((h + 1) // 2, (w + 1) // 2)))


def test_spectral_norm_holds_the_largest_singular_value_near_one():
    torch.manual_seed(0)
    disc = MultiScaleDiscriminator(scales=2, channels=8, attention_pool=2)
    convs = [m for m in disc.modules() if hasattr(m, "parametrizations")]
    assert len(convs) == 2 * (5 + 4)  # every convolution: 5 of the stack, 4 of the attention block, per scale
    for m in convs:
        m.parametrizations.weight.original.data.mul_(7.0)  # raw weights far from norm 1
    refresh_spectral_norm(disc, iterations=50)
    disc.eval()
    for m in convs:
        raw = torch.linalg.matrix_norm(m.parametrizations.weight.original.flatten(1), ord=2)
        used = torch.linalg.matrix_norm(m.weight.flatten(1), ord=2)
        assert float(raw.detach()) > 1.5 and float(used.detach()) == pytest.approx(1.0, abs=0.02)


def _task(seed=0):
    torch.manual_seed(seed)
    cfg = TrainConfig(mode="gan", init="x2-fast", model="fast", gan_scales=2, gan_channels=8, amp="none",
                      channels_last=False)
    return GANTask(cfg, torch.device("cpu"))


def test_accumulated_micro_batches_equal_one_large_batch():
    lr = [_planes(2, 16, 16, s) for s in (1, 2)]
    hr = [_planes(2, 32, 32, s + 10) for s in (1, 2)]
    small, large = _task(), _task()
    for task in (small, large):  # plain SGD: the update is linear in the gradient (Adam's first step is its sign)
        task.d_opt = torch.optim.SGD(task.disc_module.parameters(), lr=0.5)
    small.train_step(small.model, list(zip(lr, hr)), 1e-3, nullcontext)
    joined = tuple(tuple(torch.cat([a[k], b[k]]) for k in range(3)) for a, b in (lr, hr))
    large.train_step(large.model, [joined], 1e-3, nullcontext)
    for (name, a), b in zip(small.disc_module.named_parameters(), large.disc_module.parameters()):
        assert a.grad is not None and torch.allclose(a.grad, b.grad, atol=1e-7, rtol=1e-4), name  # the D step's
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), name  # and the discriminators it made
    for (name, a), b in zip(small.model.named_parameters(), large.model.parameters()):
        assert a.grad is not None and torch.allclose(a.grad, b.grad, atol=1e-7, rtol=1e-4), name
    assert set(small.last_terms) == {"l1", "adversarial", "feature_matching", "discriminator"}


def test_gan_run_trains_exports_and_resumes(image_dir, tmp_path, capsys):
    common = TINY_GAN + ["--data", str(image_dir), "--steps", "6", "--epoch-steps", "3"]
    straight = train(config_from_args(common + ["--out", str(tmp_path / "a")]))
    net, info = load_upsampler(tmp_path / "a" / "best.safetensors")  # shippable, like any upsampler
    assert info.training["mode"] == "gan" and info.training["steps"] == 6  # the last epoch's weights
    for step in (3, 6):  # and each epoch's, to choose from by rd
        _, at = load_upsampler(tmp_path / "a" / f"step-{step:06d}.safetensors")
        assert at.training["steps"] == step
    last, _ = load_upsampler(tmp_path / "a" / "step-000006.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(last.state_dict().values(), net.state_dict().values()))
    start, _ = load_upsampler("x2-fast")
    assert any(not torch.equal(a, b) for a, b in zip(net.state_dict().values(), start.state_dict().values()))
    tags = {e for e in os.listdir(tmp_path / "a" / "tb")}
    assert tags  # TensorBoard events (scalars of each loss term, sample images)
    train(config_from_args(common + ["--out", str(tmp_path / "b"), "--stop-at", "3"]))
    resumed = train(config_from_args(common + ["--out", str(tmp_path / "b"), "--resume"]))
    assert "resumed from" in capsys.readouterr().err and resumed.step == 6
    for (k, a), b in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k  # the discriminators were restored too


def test_two_process_gan_ends_with_identical_generator_and_discriminators(image_dir, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "encoder.training.train", *TINY_GAN, "--data", str(image_dir), "--out", str(out), "--steps", "4",
           "--epoch-steps", "2", "--accum", "2", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["batch"] == 16  # 4 crops x 2 micro-batches x 2 ranks
    digests = summary["rank_digests"]
    assert len(digests) == 2 and len(set(digests)) == 1 and "/" in digests[0]  # generator/discriminators


@pytest.mark.parametrize("argv,message", [
    (["--gan-weight", "-1"], "--gan-weight must be a finite number >= 0"),
    (["--gan-weight", "nan"], "--gan-weight must be a finite number >= 0"),
    (["--fm-weight", "-0.5"], "--fm-weight must be a finite number >= 0"),
    (["--gan-weight", "0"], "needs --gan-weight > 0"),
    (["--gan-loss", "wasserstein"], "gan_loss must be one of hinge, relativistic"),
    (["--gan-scales", "9"], "gan_scales must be 1 to 4"),
    (["--init", "random"], "fine-tunes an L1-trained upsampler"),
    (["--amp", "fp16"], "adversarial losses overflow fp16"),
    (["--patience", "3"], "--patience stops on validation PSNR"),
])
def test_gan_config_refuses_nonsense_with_one_line(argv, message, capsys):
    assert main(TINY_GAN + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("vsr-train: error:")
