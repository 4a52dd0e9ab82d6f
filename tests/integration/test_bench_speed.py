"""vsr-bench speed: a minimal run (tiny sizes) writes every section; bad options are one-line errors."""

import json

import pytest

from encoder.benchmarks.bench import main


def test_minimal_speed_run_writes_json_and_markdown(tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["speed", "--models", tiny_model, "--sizes", "32x24", "--devices", "cpu", "--dtypes", "fp32",
            "--batches", "1", "--repeat", "1", "--warmup", "0", "--frames", "2", "--e2e-model", tiny_model,
            "--e2e-size", "32x24", "--e2e-frames", "3", "--e2e-repeat", "1", "--e2e-threads", "1", "--out", str(out),
            "--name", "s", "--quiet"]
    import torch
    row_threads = torch.get_num_threads()
    assert main(argv) == 0
    assert torch.get_num_threads() == row_threads  # the --e2e-threads cap was undone
    data = json.loads((out / "s.json").read_text())
    # one row per installed runtime that runs fp32 on the CPU, torch first
    from vsr_plugin.runtimes import installed
    assert [r["runtime"] for r in data["network"]] == [r for r in ("torch", "onnxruntime", "openvino") if installed(r)]
    row = data["network"][0]
    assert row["model"] == tiny_model and row["size"] == [32, 24] and (row["device"], row["dtype"]) == ("cpu", "fp32")
    for other in data["network"][1:]:
        assert other["network_pack_unpack"]["fps"] > 0 and set(other["end_to_end_vs_scaler"]) == set(
            row["end_to_end_vs_scaler"])
    for key in ("network", "network_pack_unpack", "two_thirds_restore", "end_to_end"):
        assert row[key]["fps"] > 0 and row[key]["ms_per_frame"] > 0
    assert row["peak_mb"] >= 0  # measured in a fresh process (Linux /proc)
    scalers = {s["scaler"] for s in data["scalers"]}
    assert {"torch interpolate bicubic", "VapourSynth resize.Bicubic", "VapourSynth resize.Lanczos",
            "ffmpeg scale flags=bicubic", "ffmpeg scale flags=lanczos"} <= scalers
    assert set(row["end_to_end_vs_scaler"]) >= {"torch interpolate bicubic", "VapourSynth resize.Bicubic",
                                                "ffmpeg scale flags=bicubic"}
    (t,) = data["transcode"]
    assert t["input"]["frames"] == 3 and t["end_to_end"]["frames"] == 3
    assert set(t["stages_fps"]) == {"decode", "network", "encode"} and t["slowest_stage"] in t["stages_fps"]
    assert t["end_to_end_vs_slowest"] == pytest.approx(t["end_to_end"]["fps"] / t["stages_fps"][t["slowest_stage"]])
    stages = t["stages_fps"].values()
    assert t["shared_cores_bound_fps"] == pytest.approx(1 / sum(1 / v for v in stages))  # CPU: stages share cores
    assert t["end_to_end_vs_bound"] == pytest.approx(t["end_to_end"]["fps"] / t["shared_cores_bound_fps"])
    (capped,) = t["capped"]
    assert capped["threads"] == 1 and capped["fps"] > 0
    assert t["vspipe"]["frames"] == 3 and t["vspipe"]["fps"] > 0  # a real vspipe process ran the .vpy
    md = (out / "s.md").read_text()
    assert "## Network" in md and "## Conventional scalers" in md and "vspipe -c y4m" in md and "+2/3 reduction fps" in md
    assert "of the slowest single stage" in md and "--threads 1 (network and encoder each)" in md
    assert capsys.readouterr().err == ""  # --quiet


def test_untrained_presets_are_labelled(tmp_path):
    out = tmp_path / "out"
    assert main(["speed", "--models", "fast", "--sizes", "32x24", "--devices", "cpu", "--repeat", "1", "--warmup", "0",
                 "--frames", "2", "--no-e2e", "--out", str(out), "--quiet"]) == 0
    data = json.loads((out / "speed.json").read_text())
    if data["network"][0]["model"] == "fast":
        pytest.skip("a trained 'fast' model is shipped; the untrained label does not apply")
    assert data["network"][0]["model"] == "fast (untrained preset)" and "untrained" in data["notes"][0]
    assert data["network"][0]["peak_mb"] is not None  # untrained weights were saved for the fresh-process probe
    assert data["transcode"] == []


@pytest.mark.parametrize("argv,message", [
    (["--sizes", "32"], "bad size '32'"),
    (["--dtypes", "fp8"], "unknown dtype 'fp8'"),
    (["--runtimes", "tensorrt"], "runtime must be one of"),
    (["--batches", "0"], "--batches must be positive"),
    (["--models", "nope"], "no model 'nope'"),
    (["--devices", "tpu"], "unknown device 'tpu'"),
    (["--e2e-clip", "missing.mkv"], "no such clip: missing.mkv"),
    (["--e2e-threads", "0"], "--e2e-threads takes thread counts >= 1"),
])
def test_speed_user_errors_are_one_line(tmp_path, capsys, argv, message):
    assert main(["speed", *argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o").exists()
