"""vsr-train end to end on a tiny synthetic image set: learning, checkpoints, resume, DDP, config."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

import kernels

from encoder.training.data import list_images, load_pairs, split_validation
from encoder.training.tasks import SRTask
from encoder.training.train import TrainConfig, config_from_args, main, train
from tests.conftest import REPO
from vsr_plugin.models import load_upsampler

TINY = ["--model", "fast", "--crop", "32", "--batch", "4", "--val-count", "2", "--samples", "1",
        "--warmup", "5", "--lr", "3e-3", "--ema", "0", "--threads", "1"]


def test_training_improves_on_the_bilinear_base(image_dir, tmp_path):
    out = tmp_path / "run"
    result = train(config_from_args(TINY + ["--data", str(image_dir), "--out", str(out), "--steps", "60",
                                            "--epoch-steps", "30"]))
    first, last = result.summary["history"][0], result.summary["history"][-1]
    # a fresh network is the bilinear base; validate it to have the starting point
    task = SRTask(TrainConfig(data=str(image_dir), model="fast", val_count=2), torch.device("cpu"))
    val = load_pairs(split_validation(list_images(image_dir), 2)[1], 2)
    base_psnr = SRTask.score(task.validate(task.model, val)[0])["val_psnr_y"]
    assert last["val_psnr_y"] > base_psnr + 0.3
    assert last["train_loss"] < first["train_loss"]
    # shippable weights with a training summary, TensorBoard events, a summary file
    net, info = load_upsampler(out / "best.safetensors")
    assert info.training["steps"] in (30, 60) and info.training["mode"] == "sr"
    assert any((out / "tb").iterdir())
    assert json.loads((out / "summary.json").read_text())["steps"] == 60


def test_resume_continues_from_the_saved_step(image_dir, tmp_path, capsys):
    common = TINY + ["--data", str(image_dir), "--steps", "12", "--epoch-steps", "4", "--ema", "0.9"]
    straight = train(config_from_args(common + ["--out", str(tmp_path / "a")]))
    first = train(config_from_args(common + ["--out", str(tmp_path / "b"), "--stop-at", "8"]))
    assert first.step == 8
    resumed = train(config_from_args(common + ["--out", str(tmp_path / "b"), "--resume"]))
    assert "resumed from" in capsys.readouterr().err and resumed.step == 12
    assert [h["step"] for h in resumed.summary["history"]] == [4, 8, 12]
    for (k, a), b in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


# Runs vsr-train, then reports the native threads still alive: the gloo threads must be gone once
# training returns (left running into interpreter exit, they aborted a rank now and then).
_THREADS_AT_EXIT = """
import os, sys
from encoder.training.train import main
rc = main(sys.argv[1:])
names = sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
print(f"rank {os.environ['RANK']} threads after training: {names}", file=sys.stderr, flush=True)
sys.exit(rc)
"""


def test_two_process_ddp_ends_with_identical_weights(image_dir, tmp_path):
    out = tmp_path / "ddp"
    script = tmp_path / "train_and_list_threads.py"
    script.write_text(_THREADS_AT_EXIT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(script), *TINY, "--data", str(image_dir), "--out", str(out), "--steps", "6",
           "--epoch-steps", "3", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the two ranks' stderr can interleave on one line: match the reports, not lines
    reports = dict(re.findall(r"rank (\d) threads after training: (\[[^\]]*\])", proc.stderr))
    assert sorted(reports) == ["0", "1"] and not any("gloo" in names for names in reports.values()), reports
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 6
    assert len(summary["rank_digests"]) == 2 and len(set(summary["rank_digests"])) == 1
    assert summary["batch"] == 8  # 4 crops on each of 2 ranks
    load_upsampler(out / "best")


def test_config_file_and_flags(tmp_path):
    (tmp_path / "c.toml").write_text('model = "fast"\nsteps = 7\nlr = 0.01\n')
    cfg = config_from_args(["--config", str(tmp_path / "c.toml"), "--steps", "9", "--no-resume"])
    assert (cfg.model, cfg.steps, cfg.lr, cfg.resume) == ("fast", 9, 0.01, False)
    (tmp_path / "c.json").write_text(json.dumps({"crop": 64, "attention": True}))
    cfg = config_from_args(["--config", str(tmp_path / "c.json")])
    assert cfg.crop == 64 and cfg.architecture().attention


@pytest.mark.parametrize("argv,message", [
    (["--crop", "30"], "crop must be a multiple of 2 x scale"),
    (["--model", "huge"], "model must be one of"),
    (["--amp", "fp16", "--device", "cpu", "--data", "MISSING"], "image folder not found"),
])
def test_bad_configuration_is_one_clear_line(argv, message, capsys, tmp_path):
    (tmp_path / "bad.json").write_text('{"nope": 1}')
    assert main(argv + ["--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("vsr-train: error:")
    assert not (tmp_path / "run").exists()  # nothing written for a run that never started


def test_unknown_config_key(tmp_path, capsys):
    (tmp_path / "bad.json").write_text('{"nope": 1}')
    assert main(["--config", str(tmp_path / "bad.json")]) == 2
    assert "unknown keys nope" in capsys.readouterr().err


def test_reparam_training_exports_the_plain_preset(image_dir, tmp_path):
    out = tmp_path / "rep"
    result = train(config_from_args(TINY + ["--data", str(image_dir), "--out", str(out), "--steps", "4",
                                            "--epoch-steps", "2", "--reparam", "--init", "x2-fast"]))
    assert result.net.reparam
    net, info = load_upsampler(out / "best")
    assert not net.reparam and net.config == TrainConfig(model="fast").architecture()
    planes = load_pairs(list_images(image_dir)[:1], 2)[0].lr.planes
    packed = kernels.pack(*(torch.from_numpy(p)[None] for p in planes), bits=8)
    torch.testing.assert_close(net(packed), result.net.eval().float()(packed), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="--reparam applies to sr mode"):
        config_from_args(["--mode", "joint", "--reparam"])


def test_time_budget_ends_the_session_resumably(image_dir, tmp_path, capsys):
    out = tmp_path / "budget"
    common = TINY + ["--data", str(image_dir), "--out", str(out), "--steps", "100000", "--epoch-steps", "1000"]
    first = train(config_from_args(common + ["--max-time", "1.5"]))
    assert 0 < first.step < 100000 and "time budget of 1.5 s spent" in capsys.readouterr().err
    assert json.loads((out / "state.json").read_text())["step"] == first.step  # saved where it stopped
    again = train(config_from_args(common + ["--max-time", "1.5", "--resume"]))  # this session's seconds
    assert again.step > first.step


def test_init_from_a_shallower_preset_deepens_it(image_dir, tmp_path, capsys):
    """--model quality --init <default weights>: the same function to start from, 10 blocks to train."""
    out = tmp_path / "deep"
    small = tmp_path / "small"
    from vsr_plugin.models import Upsampler, UpsamplerConfig, save_upsampler
    torch.manual_seed(1)
    net = Upsampler(UpsamplerConfig(channels=48, blocks=5))
    torch.nn.init.normal_(net.tail.weight, std=0.01)
    save_upsampler(small, net)
    argv = TINY + ["--model", "quality", "--data", str(image_dir), "--out", str(out), "--steps", "2",
                   "--epoch-steps", "2", "--init", str(small)]
    result = train(config_from_args(argv))
    assert "quality x2 upsampler (deepened from 5 blocks)" in capsys.readouterr().err
    assert result.net.config.blocks == 10
    first = result.summary["history"][0]["val_psnr_y"]
    task = SRTask(TrainConfig(data=str(image_dir), model="default", val_count=2), torch.device("cpu"))
    val = load_pairs(split_validation(list_images(image_dir), 2)[1], 2)
    assert abs(first - SRTask.score(task.validate(net, val)[0])["val_psnr_y"]) < 0.05  # 2 steps from the same start
    with pytest.raises(ValueError, match="not the 'fast' architecture"):
        train(config_from_args(TINY + ["--data", str(image_dir), "--out", str(tmp_path / "x"), "--init", str(small)]))
