#!/usr/bin/env bash
# Every GPU measurement the kernels issue asks for, in one run, from the repository root of a
# machine with an NVIDIA GPU (it installs the cuda extra into .venv first):
#
#   bash docs/run_gpu.sh               # -> docs/results/gpu_check.*, speed_cuda.*, pipe_cuda.txt
#
# 1. python -m kernels.gpu_check: pytest -m cuda (CuPy vs twin, bit for bit), then each fused
#    kernel vs the twin path at 1920x1080 -> 3840x2160 (ms, GB/s, fraction of peak bandwidth).
# 2. vsr-bench speed on CUDA: network alone, network + kernels and end to end, fp16/bf16/fp32,
#    batches 1, 4 and 8, at 960x540 and 1920x1080 input; the transcode section at 1920x1080.
# 3. vsr-transcode pipe --upscale reading and writing y4m at 1920x1080 -> 3840x2160 (default model,
#    fp16, batch 4): fps from its own summary line.
#
# Environment: OUT (default docs/results), DEVICE (default cuda; "cpu" only to try the script),
# SIZE (pipe and transcode input, default 1920x1080), FRAMES (pipe frames, default 240),
# SPEED_SIZES / DTYPES / BATCHES (step 2), SKIP_CHECK=1 to skip step 1.
set -euo pipefail

OUT=${OUT:-docs/results}
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-1920x1080}
FRAMES=${FRAMES:-240}
SPEED_SIZES=${SPEED_SIZES:-960x540,1920x1080}
DTYPES=${DTYPES:-fp16,bf16,fp32}
BATCHES=${BATCHES:-1,4,8}
PY=.venv/bin/python

make venv >&2
if [[ "$DEVICE" == cuda* ]]; then
    $PY -m pip install -q -e '.[cuda,dev]'
fi
mkdir -p "$OUT"
run() { echo "+ $*" >&2; "$@"; }

if [[ -z "${SKIP_CHECK:-}" ]]; then
    run $PY -m kernels.gpu_check --out "$OUT"
fi

run .venv/bin/vsr-bench speed --devices "$DEVICE" --dtypes "$DTYPES" --batches "$BATCHES" \
    --sizes "$SPEED_SIZES" --e2e-size "$SIZE" --e2e-model default --out "$OUT" --name "speed_$DEVICE"

FFMPEG=$($PY -c "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
run "$FFMPEG" -hide_banner -loglevel error -f lavfi -i "testsrc2=size=$SIZE:rate=24" -frames:v "$FRAMES" \
    -pix_fmt yuv420p -f yuv4mpegpipe "$TMP/in.y4m"
{
    echo "# vsr-transcode pipe --upscale, $SIZE, $FRAMES frames, default model, $DEVICE fp16, batch 4"
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
    for _ in 1 2; do  # the first run pays for CUDA start-up and cupy's kernel builds
        start=$(date +%s.%N)
        .venv/bin/vsr-transcode pipe --upscale --model default --device "$DEVICE" --dtype fp16 --batch 4 \
            < "$TMP/in.y4m" > /dev/null 2> "$TMP/err.txt"
        end=$(date +%s.%N)
        tail -n 1 "$TMP/err.txt"
        $PY -c "print(f'wall {($end - $start):.2f} s for $FRAMES frames: {$FRAMES / ($end - $start):.1f} fps incl. start-up')"
    done
} | tee "$OUT/pipe_$DEVICE.txt"
