"""Validation PSNR-Y of upsamplers on the coded validation crops of the codec-aware training runs,
split by the CRF the crops were coded at (x264 and x265 sequences together; the uncoded ones count
with the low range). The table in README.md, "Shipped models", comes from:

    PYTHONPATH=. .venv/bin/python docs/val_by_crf.py x2-default x2-codec-aware-up x2-codec-aware-v2-up \\
        x2-codec-quality-up

It builds (or reuses) the caches in runs/cache with the codec-aware runs' settings below. With
``--layer two-thirds`` the crops are 2/3 layers, restored as vsr-transcode does (x2, then the
antialiased bicubic reduction to the picture's size).
"""

import argparse
import dataclasses

import torch

from encoder.training.codec_data import codec_pairs
from encoder.training.data import split_validation
from encoder.training.tasks import SRTask
from encoder.training.train import config_from_args, training_images
from vsr_plugin.models import load_upsampler

NATURE_1080P = ("100075,100098,103041,105019,105053,106020,108073,109034,112082,113016,113044,117054,118020,"
                "118035,12003,12074,122048,124084,126039,130034")  # the photos of the nature_1080p clip
RUN = ["--mode", "sr", "--model", "default", "--degradation", "x264+x265", "--degrade-crf", "16,40",
       "--degrade-window", "192", "--data", "../shared/data/train,runs/photos", "--exclude", NATURE_1080P,
       "--rescales", "0.8,0.6", "--cache", "runs/cache", "--crop", "96"]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="upsampler names or weights paths")
    parser.add_argument("--layer", default="half", help="half | two-thirds (default: half)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for low, high in [(16, 26), (27, 40)]:
        cfg = config_from_args(RUN + ["--train-crf", f"{low},{high}", "--layer", args.layer])
        _, val_files = split_validation(training_images(cfg), cfg.val_count)
        val = []
        for spec in cfg.degrade_specs():
            val_spec = dataclasses.replace(spec, rescales=(), seed=spec.seed + 1)
            val += codec_pairs(val_files, val_spec, cfg.cache, crf=(low, high), quiet=True)[::3]
        task = SRTask(cfg, torch.device("cpu"))
        for model in args.models:
            net, _ = load_upsampler(model)
            score = task.score(task.validate(net.to(memory_format=torch.channels_last), val)[0])["val_psnr_y"]
            print(f"CRF {low}-{high}: {model} {score:.3f}", flush=True)
