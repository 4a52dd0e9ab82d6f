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
# 4. (TRAIN_S > 0) vsr-train of the quality-preset codec-aware upsampler (x264 + x265 base layers)
#    for a fixed budget of TRAIN_S seconds (default 420, within a 10-minute lease), bf16, batch 64,
#    deepened from the default pair's upsampler; the weights, log and summary land in one folder,
#    $OUT/train_cuda/, for the caller to collect (resume it elsewhere with the same command and --resume).
# 5. ONNX Runtime's CUDA and TensorRT execution providers on the exported x2-default graph (960x540
#    input, fp32 and fp16 graphs) where onnxruntime-gpu is installed; says plainly what it could not run.
#
# Environment: OUT (default docs/results), DEVICE (default cuda; "cpu" only to try the script),
# SIZE (pipe and transcode input, default 1920x1080), FRAMES (pipe frames, default 240),
# SPEED_SIZES / DTYPES / BATCHES (step 2), SKIP_CHECK=1 to skip step 1, TRAIN_S (step 4; 0 skips it),
# TRAIN_DATA (default ../shared/data/train; the machine must hold it).
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

TRAIN_S=${TRAIN_S:-420}
TRAIN_DATA=${TRAIN_DATA:-../shared/data/train}
if [[ "$TRAIN_S" != 0 ]]; then
    if [[ -d "$TRAIN_DATA" ]]; then
        mkdir -p "$OUT/train_cuda"
        run .venv/bin/vsr-train --mode sr --model quality --init x2-codec-aware-v2-up --degradation x264+x265 --degrade-crf 16,40 \
            --degrade-window 192 --data "$TRAIN_DATA" --rescales 0.8,0.6 --batch 64 --amp bf16 --device "$DEVICE" \
            --steps 20000 --epoch-steps 500 --lr 5e-4 --max-time "$TRAIN_S" --out "$OUT/train_cuda" \
            --cache "$OUT/train_cuda/cache" --resume 2>&1 | tee "$OUT/train_cuda/log.txt"
        rm -rf "$OUT/train_cuda/cache"  # rebuilt on demand; the weights and state are what travel back
    else
        echo "step 4 skipped: no training data at $TRAIN_DATA" | tee "$OUT/train_cuda_skipped.txt"
    fi
fi

# step 5: ONNX Runtime on the GPU (onnxruntime-gpu is not a dependency; try it where it is installed)
{
    mkdir -p "$OUT/onnx_gpu"
    .venv/bin/vsr-export onnx x2-default -o "$OUT/onnx_gpu/x2-default.onnx"
    .venv/bin/vsr-export onnx x2-default --fp16 -o "$OUT/onnx_gpu/x2-default-fp16.onnx"
    $PY - "$OUT/onnx_gpu" <<'PYEOF'
import sys, time
import numpy as np
folder = sys.argv[1]
try:
    import onnxruntime as ort
except ImportError:
    sys.exit("onnxruntime is not installed: nothing to time")
have = ort.get_available_providers()
print("available providers:", ", ".join(have))
for provider in ("TensorrtExecutionProvider", "CUDAExecutionProvider"):
    if provider not in have:
        print(f"{provider}: not available here (pip install onnxruntime-gpu); not run")
        continue
    for name, dtype in (("x2-default.onnx", np.float32), ("x2-default-fp16.onnx", np.float16)):
        try:
            s = ort.InferenceSession(f"{folder}/{name}", providers=[provider])
            x = (np.random.rand(1, 6, 270, 480) * 2 - 1).astype(dtype)
            for _ in range(5):
                s.run(None, {"packed": x})
            t = time.perf_counter()
            for _ in range(20):
                s.run(None, {"packed": x})
            ms = (time.perf_counter() - t) / 20 * 1000
            print(f"{provider} {name}: {ms:.2f} ms per 960x540 frame (network only), {1000 / ms:.1f} fps")
        except Exception as e:  # report and go on: this step only measures
            print(f"{provider} {name}: could not run ({type(e).__name__}: {str(e).splitlines()[0]})")
PYEOF
} 2>&1 | tee "$OUT/onnx_gpu.txt"
