"""Rate–distortion plots (matplotlib, Agg backend): one PNG per clip and metric.

Bitrate on a log axis, one line per pipeline with its CRF beside each point, the BD-rate against
``native`` in the legend, the bitrate range shared by all curves shaded, and the crossovers of
each reduced-resolution pipeline with ``native`` marked.
"""

from __future__ import annotations

import io
import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

STYLE = {  # pipeline: (colour, marker, line style)
    "native": ("#222222", "o", "-"),
    "bicubic": ("#1f77b4", "s", "--"),
    "lanczos": ("#17becf", "D", ":"),
    "sr": ("#d62728", "^", "-"),
    "vsr": ("#2ca02c", "v", "-"),
    "auto": ("#ff7f0e", "*", "--"),  # points labelled with the full-resolution CRF and the side chosen
}
LABELS = {"psnr_y": "PSNR-Y (dB)", "ssim_y": "SSIM-Y", "psnr_yuv": "PSNR-YUV 6:1:1 (dB)", "vmaf": "VMAF"}


def _legend_label(clip: dict, metric: str, name: str) -> str:
    bd = clip.get("bd", {}).get(metric, {}).get("vs native", {}).get(name)
    if not bd:
        return name
    d = bd["bd_rate"]["pchip"]
    if d["value"] is None:
        return f"{name} (BD-rate vs native: n/a)"
    flag = "" if d["reliable"] else ", flagged: see report"
    return f"{name} (BD-rate vs native {d['value']:+.1f}%{flag})"


def rd_figure(data: dict, clip: dict, metric: str):
    """The figure of one clip and metric (returned open; the caller closes it)."""
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    names = list(dict.fromkeys(p["pipeline"] for p in clip["points"]))
    lows, highs = [], []
    for name in names:
        pts = sorted((p for p in clip["points"] if p["pipeline"] == name), key=lambda p: p["kbps"])
        x, y = [p["kbps"] for p in pts], [p[metric] for p in pts]
        lows.append(min(x))
        highs.append(max(x))
        colour, marker, ls = STYLE.get(name, ("#9467bd", "x", "-"))
        ax.plot(x, y, ls, marker=marker, color=colour, lw=2 if name in ("sr", "vsr", "native", "auto") else 1.4, ms=6,
                label=_legend_label(clip, metric, name))
        for p in pts:
            label = f"{p['full_crf']:g} {p['resolution']}" if name == "auto" else f"{p['crf']:g}"
            ax.annotate(label, (p["kbps"], p[metric]), textcoords="offset points", xytext=(4, -10),
                        fontsize=7, color=colour, alpha=0.8)
    lo, hi = max(lows), min(highs)
    if hi > lo:
        ax.axvspan(lo, hi, color="#f2f2f2", zorder=0, label="bitrate range shared by all curves")
    if metric in clip.get("bd", {}):
        for name, cmp in clip["bd"][metric].get("vs native", {}).items():
            for c in cmp["crossovers"]:
                ax.axvline(c["rate"], color=STYLE.get(name, ("#9467bd",))[0], lw=0.8, ls=(0, (2, 3)))
                ax.annotate(f"{name} × native {c['rate']:.0f} kbps", (c["rate"], 0.98),
                            xycoords=("data", "axes fraction"), fontsize=7, rotation=90, ha="right", va="top",
                            color=STYLE.get(name, ("#9467bd",))[0])
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("bitrate (kbps, log scale; CRF beside each point)")
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.set_title(f"{clip['name']} {clip['width']}x{clip['height']}, {clip['frames']} frames — "
                 f"{data['codec']} {data['preset']}", fontsize=10)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def rd_plots(data: dict, name: str, metrics=tuple(LABELS)) -> dict[str, dict[str, tuple[str, bytes]]]:
    """Render every clip and metric: ``{clip: {metric: (file name, PNG bytes)}}``, file names
    ``{name}_{clip}_{metric}.png``. Nothing is written here, so an interrupted run leaves no plots."""
    rendered: dict[str, dict[str, tuple[str, bytes]]] = {}
    for clip in data["clips"]:
        for metric in metrics:
            fig = rd_figure(data, clip, metric)
            buf = io.BytesIO()
            try:
                fig.savefig(buf, format="png")
            finally:
                plt.close(fig)
            rendered.setdefault(clip["name"], {})[metric] = (f"{name}_{clip['name']}_{metric}.png", buf.getvalue())
    return rendered
