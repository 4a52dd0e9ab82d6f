"""What ``--resolution auto`` costs: probe time against the whole ``vsr-transcode`` run, per clip and CRF.

    PYTHONPATH=. .venv/bin/python docs/probe_cost.py CLIP... [--crf 24,32,40] [--out docs/results]

Runs ``vsr-transcode CLIP --crf C`` (the default ``--resolution auto``) for each clip and CRF as a
user would, reads the probe time from its summary line and times the whole process; then the same
encode with the side it chose forced (``--resolution half|two-thirds|full``, no probes), so probe share =
probe time / auto run time, probe / forced = probe time against the encode it decides, and
overhead = auto run time / forced run time. Writes ``NAME.json`` and ``NAME.md`` (``--name``,
default ``probe_cost``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from encoder.benchmarks.report import machine, write_report
from vsr_plugin.measure.markdown import markdown_table
from vsr_plugin.measure.video import read_clip
from vsr_plugin.media import VideoInput

CLI = [sys.executable, "-m", "vsr_plugin.cli"]
DECISION = re.compile(r"resolution auto: (half|two-thirds|full) (?:\((?:2x|2/3) layer, CRF ([0-9.]+)\)|\(native\)) .* "
                      r"\((?:[a-z-]+ )?([-+][0-9.]+)(?:, short of the [0-9.]+ lead it needs)?(?:, [a-z-]+ not probed)*\); "
                      r"(?:(\d+) segment\(s\), (\d+) frames|the whole clip \((\d+) frames\)), "
                      r"(\d+) probe encodes in ([0-9.]+) s")


def timed(argv: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    proc = subprocess.run(CLI + argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"vsr-transcode {' '.join(argv)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - t, proc.stderr


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", nargs="+")
    p.add_argument("--crf", default="24,32,40")
    p.add_argument("--out", default="docs/results")
    p.add_argument("--name", default="probe_cost", help="report name (NAME.json, NAME.md)")
    args = p.parse_args()
    rows, data = [], []
    with tempfile.TemporaryDirectory(prefix="vsr-probe-cost-") as tmp:
        for clip_path in args.clips:
            clip = read_clip(clip_path, max_frames=1)
            with VideoInput(clip_path) as inp:
                frames = inp.frame_count_estimate
            for crf in (float(c) for c in args.crf.split(",")):
                out = Path(tmp) / "out.vsr.mkv"
                auto_s, err = timed([clip_path, "-o", str(out), "-y", "--crf", f"{crf:g}"])
                m = DECISION.search(err)
                if m is None:
                    raise RuntimeError(f"no decision line in: {err[-400:]}")
                side, layer_crf, margin, segments, probe_frames, whole_frames, encodes, probe_s = m.groups()
                if whole_frames is not None:  # a short clip is probed whole: one segment
                    segments, probe_frames = "1", whole_frames
                forced_crf = float(layer_crf) if side != "full" else crf
                forced_s, _ = timed([clip_path, "-o", str(out), "-y", "--resolution", side, "--crf", f"{forced_crf:g}"])
                entry = {"clip": clip_path, "size": f"{clip.width}x{clip.height}", "frames": frames, "crf": crf,
                         "chose": side, "probe_margin": float(margin), "segments": int(segments),
                         "probe_frames": int(probe_frames), "probe_encodes": int(encodes), "probe_s": float(probe_s),
                         "auto_run_s": auto_s, "forced_run_s": forced_s}
                data.append(entry)
                rows.append([Path(clip_path).name, entry["size"], frames, f"{crf:g}", side, f"{probe_frames}",
                             encodes, f"{float(probe_s):.1f}", f"{auto_s:.1f}", f"{100 * float(probe_s) / auto_s:.0f}%",
                             f"{forced_s:.1f}", f"{100 * float(probe_s) / forced_s:.0f}%", f"{auto_s / forced_s:.2f}x"])
                print(" | ".join(str(c) for c in rows[-1]), flush=True)
    md = ("# `--resolution auto`: probe cost\n\n"
          f"`PYTHONPATH=. .venv/bin/python docs/probe_cost.py {' '.join(args.clips)} --crf {args.crf}"
          f"{' --name ' + args.name if args.name != 'probe_cost' else ''}`; "
          f"machine: {machine()['cpu']}, {machine()['cpu_threads']} torch threads.\n\n"
          "auto run: `vsr-transcode CLIP --crf C` (probes + encode, whole process); forced run: the same encode "
          "with the chosen side forced (`--resolution half|two-thirds|full`, no probes).\n\n"
          + markdown_table(["clip", "size", "frames", "CRF", "chose", "probe frames", "probe encodes", "probe s",
                            "auto run s", "probe share", "forced run s", "probe / forced", "auto / forced"], rows))
    write_report(args.out, args.name, {"command": " ".join(sys.argv), "runs": data, "machine": machine()}, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
