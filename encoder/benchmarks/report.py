"""Benchmark reports: one JSON file with every number, one Markdown table and any figures beside
them, each written atomically."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from vsr_plugin.atomic import write_bytes_atomic


def machine() -> dict:
    """What the numbers were measured on."""
    info = {
        "cpu": _cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_file(out_dir: str | Path, filename: str, data: bytes) -> Path:
    """Write one more artefact of a report (e.g. a PNG plot) into ``out_dir``, atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / filename
    write_bytes_atomic(path, data)
    return path


def write_report(out_dir: str | Path, name: str, data: dict, markdown: str) -> tuple[Path, Path]:
    """Write ``name.json`` and ``name.md`` into ``out_dir`` (created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    write_bytes_atomic(json_path, (json.dumps(data, indent=2) + "\n").encode())
    write_bytes_atomic(md_path, markdown.encode())
    return json_path, md_path
