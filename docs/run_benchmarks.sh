#!/usr/bin/env bash
# Reproduce every figure in docs/benchmarks.md. Run from the repository root:
#
#   bash docs/run_benchmarks.sh                       # the default steps below, in order
#   STEPS="clips rd1080" bash docs/run_benchmarks.sh  # a subset
#
# Steps: clips (three 1080p test clips rendered from photos), rd1080 (x264 rate–distortion on them),
# ablation (the no-codec pair ABLATION on the same clips, reusing rd1080's native points;
# skipped with a note when ABLATION does not exist), rdvideo (x264 rate–distortion on the natural
# clips of ../shared/data/video), sr (image benchmark with the learned pairs, lossless base layer),
# speed (fps and memory; x264 medium and veryfast), auto (--resolution auto measured like the other
# pipelines on the natural clips, reusing rdvideo's native points (rd1080 has the 1080p ones), and its probe
# cost on those clips and a 10 s 1080p clip). Optional, not in the default set: rd1080-x265 and
# rd1080-av1 (same clips, other codecs); cpu (the CPU speed reports named *_$MACHINE, default "xeon":
# runtimes and precisions, one frame per call against four, the transcode with x264 medium and
# veryfast, the probe cost on the 30 s clip; the *_unfused reports were this step run at be8aa2b, before
# the fused CPU path, and are not reproduced by this code); lossless (the lossless pairs runs/pair-ll*,
# skipped when absent); three-way (the 2/3 layer and auto among three sizes on the 1080p clips with x264
# and x265 and on the natural clips, reusing the reports of rd1080, rd1080-x265 and auto).
#
# Environment:
#   VSR_DATA    data root (default ../shared/data)
#   OUT         reports and plots (default docs/results)
#   CLIPS       rendered test clips (default out/clips; about 0.2 GB, not committed)
#   MODEL_ARGS  extra options for every rd run, e.g. "--model runs/x2-default/best" while no
#               weights are shipped, or "--down-model PATH" for the learned downsampler
#   DEVICE      network device for rd (default auto: CUDA when present)
#   ABLATION    downsampler of the ablation pair (default runs/pair-default-nocodec/best-down)
#   BEFORE      step cpu: a checkout of an earlier commit to time the network section against (optional)
set -euo pipefail

DATA=${VSR_DATA:-../shared/data}
OUT=${OUT:-docs/results}
CLIPS=${CLIPS:-out/clips}
MODEL_ARGS=${MODEL_ARGS:-}
DEVICE=${DEVICE:-auto}
STEPS=${STEPS:-clips rd1080 ablation rdvideo sr speed auto perceptual}
ABLATION=${ABLATION:-runs/pair-default-nocodec/best-down}
MACHINE=${MACHINE:-xeon}
BENCH=${BENCH:-.venv/bin/vsr-bench}

URBAN=()   # six 1024x768 Urban100 photos -> a 3x2 mosaic (3072x1536)
for n in 002 005 012 018 026 045; do URBAN+=("$DATA/Urban100/img_$n.png"); done
URBAN2=()  # six more
for n in 055 056 070 071 079 086; do URBAN2+=("$DATA/Urban100/img_$n.png"); done
NATURE=()  # twenty 481x321 BSD200 photos -> a 5x4 mosaic (2405x1284)
for n in 100075 100098 103041 105019 105053 106020 108073 109034 112082 113016 \
         113044 117054 118020 118035 12003 12074 122048 124084 126039 130034; do
    NATURE+=("$DATA/train/BSD200/$n.png")
done
VIDEO=("$DATA/video/bus_cif_352x288_17f.y4m" "$DATA/video/carphone_qcif_176x144_120f.mp4"
       "$DATA/video/bikes_640x272_250f.mp4" "$DATA/video/bigbuckbunny_1280x720_132f.mp4")
HD=("$CLIPS/urban_1080p.mkv" "$CLIPS/nature_1080p.mkv" "$CLIPS/urban2_1080p.mkv")

run() { echo "+ $*" >&2; "$@"; }
has() { [[ " $STEPS " == *" $1 "* ]]; }
# shellcheck disable=SC2086  # MODEL_ARGS is a list of options
rd() { run "$BENCH" rd "$@" --device "$DEVICE" --out "$OUT" $MODEL_ARGS; }

mkdir -p "$OUT" "$CLIPS"

if has clips; then
    run "$BENCH" make-clip "${URBAN[@]}" --mosaic 3x2 --size 1920x1080 --frames 48 -o "$CLIPS/urban_1080p.mkv"
    run "$BENCH" make-clip "${NATURE[@]}" --mosaic 5x4 --size 1920x1080 --frames 48 -o "$CLIPS/nature_1080p.mkv"
    run "$BENCH" make-clip "${URBAN2[@]}" --mosaic 3x2 --size 1920x1080 --frames 48 -o "$CLIPS/urban2_1080p.mkv"
fi
if has rd1080; then  # the default pair as vsr, x2-default as sr, and --resolution auto, all in fp32
    rd "${HD[@]}" --codec libx264 --pipelines native,lanczos,sr,vsr,auto --dtype fp32 --name rd_1080p_libx264
fi
if has ablation; then
    if [[ -f "$ABLATION.safetensors" ]]; then
        rd "${HD[@]}" --codec libx264 --pipelines native,bicubic,vsr --down-model "$ABLATION" \
            --reuse "$OUT/rd_1080p_libx264.json" --name rd_1080p_libx264_ablation_nocodec
    else
        echo "note: ablation skipped: $ABLATION.safetensors not found (train it: README, Shipped models)" >&2
    fi
fi
if has rdvideo; then
    rd "${VIDEO[@]}" --frames 48 --codec libx264 --name rd_video_libx264
fi
if has rd1080-x265; then
    rd "${HD[@]}" --codec libx265 --pipelines native,vsr,auto --name rd_1080p_libx265
    # vsr one step below the ladder, where auto lands at CRF 44
    rd "${HD[@]}" --codec libx265 --pipelines vsr --crf-half 33,37 --crf-full 40,44 --no-lossless-check \
        --name rd_1080p_libx265_vsr_low
fi
if has rd1080-av1; then
    rd "${HD[@]}" --codec libsvtav1 --name rd_1080p_libsvtav1
fi
if has sr; then
    PAIRS=x2-codec-aware-v2-down,x2-codec-quality-down,x2-codec-default-down
    [[ -f "$ABLATION.safetensors" ]] && PAIRS="$PAIRS,$ABLATION"
    run "$BENCH" sr --data "$DATA" --pairs "$PAIRS" --out "$OUT"
fi
if has auto; then
    for secs in 30 60; do
        [[ -f "$CLIPS/urban_${secs}s_1080p.mkv" ]] || run "$BENCH" make-clip "${URBAN[@]}" --mosaic 3x2 \
            --size 1920x1080 --frames $((secs * 24)) -o "$CLIPS/urban_${secs}s_1080p.mkv"
    done
    # the default pair since 2026-12-02 (codec-perceptual; the 1080p clips' auto points are in rd1080's
    # report); rd_*_auto (no suffix) hold the previous pair's
    rd "${VIDEO[@]}" --frames 48 --codec libx264 --pipelines native,vsr,auto --reuse "$OUT/rd_video_libx264.json" \
        --name rd_video_libx264_perceptual_auto
    rd "${VIDEO[@]}" --frames 48 --codec libx264 --pipelines native,vsr,auto --auto-metric psnr \
        --reuse "$OUT/rd_video_libx264_perceptual_auto.json" --name rd_video_libx264_perceptual_auto_psnr
    rd "${HD[@]}" --codec libx264 --pipelines native,vsr,auto --auto-metric psnr --dtype fp32 \
        --reuse "$OUT/rd_1080p_libx264.json" --name rd_1080p_libx264_auto_psnr
    run env PYTHONPATH=. .venv/bin/python docs/probe_cost.py "$CLIPS/urban_30s_1080p.mkv" "${HD[0]}" --crf 32,40 \
        --name probe_cost_30s --out "$OUT"
    run env PYTHONPATH=. .venv/bin/python docs/probe_cost.py "$CLIPS/urban_60s_1080p.mkv" "$CLIPS/urban_30s_1080p.mkv" \
        --crf 32 --name probe_cost_long --out "$OUT"
fi
if has cpu; then
    run "$BENCH" speed --models x2-fast,x2-default --sizes 960x540 --devices cpu --dtypes fp32,bf16 \
        --out "$OUT" --name "speed_runtimes_$MACHINE"
    run "$BENCH" speed --models x2-fast,x2-default --sizes 960x540 --devices cpu --dtypes bf16 --runtimes torch \
        --batches 1,4 --no-e2e --no-vspipe --out "$OUT" --name "speed_batch_$MACHINE"
    run "$BENCH" speed --models x2-fast --sizes 960x540 --devices cpu --runtimes torch --dtypes bf16 --e2e-repeat 3 \
        --out "$OUT" --name "speed_transcode_$MACHINE"
    # the same with the torch twins and malloc as it is (before the compiled CPU kernels and the allocator setting)
    run env VSR_CPU_KERNELS=0 VSR_MALLOC_TUNING=0 "$BENCH" speed --models x2-fast --sizes 960x540 --devices cpu \
        --runtimes torch --dtypes bf16 --e2e-preset veryfast --e2e-threads 1,2 --e2e-repeat 3 --out "$OUT" \
        --name "speed_transcode_veryfast_${MACHINE}_twin"
    run "$BENCH" speed --models x2-fast --sizes 960x540 --devices cpu --runtimes torch --dtypes bf16 \
        --e2e-preset veryfast --e2e-threads 1,2 --e2e-repeat 3 --out "$OUT" --name "speed_transcode_veryfast_$MACHINE"
    run "$BENCH" speed --models x2-fast --sizes 960x540 --devices cpu --runtimes torch --dtypes bf16 \
        --e2e-preset veryfast --e2e-threads 1,2 --e2e-repeat 3 --e2e-frames 48 --out "$OUT" \
        --name "speed_transcode_veryfast_${MACHINE}_48f"
    # the network section with the compiled kernels' threads as they are, and (BEFORE: a checkout of f881091,
    # whose kernels started their own std::threads per call) as they were
    run "$BENCH" speed --models x2-fast,x2-default --sizes 960x540 --devices cpu --runtimes torch --dtypes bf16 \
        --no-e2e --no-vspipe --out "$OUT" --name "speed_cpu_kernels_${MACHINE}_openmp"
    if [[ -n "${BEFORE:-}" ]]; then
        run env PYTHONPATH="$BEFORE" "$BENCH" speed --models x2-fast,x2-default --sizes 960x540 --devices cpu \
            --runtimes torch --dtypes bf16 --no-e2e --no-vspipe --out "$OUT" --name "speed_cpu_kernels_${MACHINE}_stdthreads"
    fi
    run env PYTHONPATH=. .venv/bin/python docs/allocator_ab.py --name "cpu_allocator_$MACHINE"
    [[ -f "$CLIPS/urban_30s_1080p.mkv" ]] || run "$BENCH" make-clip "${URBAN[@]}" --mosaic 3x2 \
        --size 1920x1080 --frames 720 -o "$CLIPS/urban_30s_1080p.mkv"
    run env PYTHONPATH=. .venv/bin/python docs/probe_cost.py "$CLIPS/urban_30s_1080p.mkv" "${HD[0]}" --crf 32,40 \
        --name "probe_cost_30s_$MACHINE" --out "$OUT"
fi
if has lossless; then
    PAIRS=""
    for r in runs/pair-ll runs/pair-ll-b03 runs/pair-ll-b10 runs/pair-ll-b30; do
        [[ -f "$r/best-down.safetensors" ]] && PAIRS="$PAIRS${PAIRS:+,}$r/best-down:$r/best-up"
    done
    if [[ -n "$PAIRS" ]]; then
        run "$BENCH" sr --data "$DATA" --models x2-default,runs/pair-ll-b30/best-up --pairs "$PAIRS" --no-speed \
            --dtype fp32 --out "$OUT/sr_pair_lossless"
        mv "$OUT/sr_pair_lossless/sr_x2.md" "$OUT/sr_x2_pair_lossless.md"
        mv "$OUT/sr_pair_lossless/sr_x2.json" "$OUT/sr_x2_pair_lossless.json"
        rmdir "$OUT/sr_pair_lossless"
    else
        echo "lossless: no runs/pair-ll* weights here (docs/benchmarks.md has the training commands); skipped"
    fi
fi
if has perceptual; then  # x2-perceptual against x2-default in the sr pipeline, VMAF and VMAF-NEG (#14)
    rd "${HD[@]}" --codec libx264 --pipelines native,sr --model x2-perceptual --dtype fp32 \
        --reuse "$OUT/rd_1080p_libx264.json" --name rd_1080p_libx264_perceptual
    NEG_REUSE=()  # the natives of an earlier perceptual NEG report, where there is one (as measured)
    [[ -f "$OUT/rd_1080p_libx264_perceptual_neg.json" ]] && NEG_REUSE=(--reuse "$OUT/rd_1080p_libx264_perceptual_neg.json")
    rd "${HD[@]}" --codec libx264 --pipelines native,sr --model x2-default --dtype fp32 \
        --vmaf-model version=vmaf_v0.6.1neg "${NEG_REUSE[@]}" --name rd_1080p_libx264_neg
    rd "${HD[@]}" --codec libx264 --pipelines native,sr --model x2-perceptual --dtype fp32 \
        --vmaf-model version=vmaf_v0.6.1neg --reuse "$OUT/rd_1080p_libx264_neg.json" --name rd_1080p_libx264_perceptual_neg
fi
if has three-way; then  # the 2/3 layer (vsr23) and auto among three sizes, as vsr-transcode decides (#10)
    rd "${HD[@]}" --codec libx264 --pipelines native,vsr,vsr23,auto --dtype bf16 \
        --reuse "$OUT/rd_1080p_libx264.json" --name rd_1080p_libx264_three_way
    rd "${HD[@]}" --codec libx265 --pipelines native,vsr,vsr23,auto \
        --reuse "$OUT/rd_1080p_libx265.json" --name rd_1080p_libx265_three_way
    rd "${VIDEO[@]}" --frames 48 --codec libx264 --pipelines native,vsr,vsr23,auto \
        --reuse "$OUT/rd_video_libx264_perceptual_auto.json" --name rd_video_libx264_three_way
    rd "${HD[@]}" --codec libx264 --pipelines native,lanczos,vsr23,lanczos23 --dtype bf16 \
        --reuse "$OUT/rd_1080p_libx264_three_way.json" --name rd_1080p_libx264_lanczos23
    rd "${VIDEO[@]}" --frames 48 --codec libx264 --pipelines native,lanczos \
        --reuse "$OUT/rd_video_libx264_three_way.json" --name rd_video_libx264_lanczos
    rd "${HD[@]}" --codec libx264 --pipelines native,vsr,vsr23,auto --auto-metric psnr --dtype bf16 \
        --reuse "$OUT/rd_1080p_libx264_three_way.json" --name rd_1080p_libx264_three_way_auto_psnr
fi
if has speed; then
    run "$BENCH" speed --out "$OUT"
    run "$BENCH" speed --out "$OUT" --name speed_veryfast --e2e-preset veryfast
    run "$BENCH" speed --models x2-fast --sizes 960x540 --devices cpu --runtimes torch --dtypes bf16 \
        --e2e-preset veryfast --e2e-threads 1,2 --e2e-repeat 3 --out "$OUT" --name speed_transcode_veryfast
fi
