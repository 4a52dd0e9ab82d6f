#!/usr/bin/env bash
# The lossless comparison with the quality upsampler on both sides (#10; docs/benchmarks.md, "A bigger
# upsampler on both sides"). Every step resumes where a stop left it: run the script again. From the
# repository root, after make test (the venv) and ../shared/tools/extra_photos.sh runs/photos:
#   1. the bicubic-trained quality x2, the baseline (runs/sr-quality);
#   2. the quality pair, 20,000 steps: the default downsampler from x2-codec-default-down (the large one
#      gained nothing, stop 24) and the upsampler from the baseline, lossless, base weight 0.1
#      (runs/pair-ll-quality);
#   3. vsr-bench sr: the pair against bicubic down + the baseline (runs/eval/pq/sr_x2.md).
# AMP=bf16 on CPUs with native BF16 (AMX), where it is about 4x faster; auto picks it there.
set -euo pipefail
cd "$(dirname "$0")/.."
AMP=${AMP:-auto}
DATA=${VSR_DATA:-../shared/data}
NATURE=100075,100098,103041,105019,105053,106020,108073,109034,112082,113016,113044,117054,118020,118035,12003,12074,122048,124084,126039,130034  # the nature_1080p clip's photos
train() { nice -n 10 .venv/bin/vsr-train --data "$DATA/train,runs/photos" --exclude "$NATURE" --rescales 0.8,0.6 \
              --crop 128 --batch 16 --lr 5e-4 --epoch-steps 1000 --amp "$AMP" --threads 2 --resume "$@"; }
train --mode sr --model quality --init x2-default --warmup 200 --steps 30000 --out runs/sr-quality
train --mode joint --model quality --init runs/sr-quality/best --init-down x2-codec-default-down \
      --proxy-codec none --proxy-noise 0 --base-weight 0.1 --down-lr-scale 1 --steps 20000 --out runs/pair-ll-quality
nice -n 10 .venv/bin/vsr-bench sr --data "$DATA" --models runs/sr-quality/best \
      --pairs runs/pair-ll-quality/best-down:runs/pair-ll-quality/best-up --no-speed --dtype fp32 --out runs/eval/pq
