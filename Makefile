# vsr — set-up and the two everyday commands. Both create .venv on their own.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# First Python >= 3.12 on PATH, then in pyenv's versions (oldest supported first: widest wheel coverage).
find_python = $(shell \
  for c in python3.12 python3.13 python3.14 python3 python; do \
    p=$$(command -v $$c 2>/dev/null) || continue; \
    $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; exit 0; }; \
  done; \
  root=$$(pyenv root 2>/dev/null || echo $$HOME/.pyenv); \
  for p in $$(ls -d $$root/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V); do \
    $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; exit 0; }; \
  done)

.PHONY: venv demo test test-all clean
venv: $(STAMP)

$(STAMP): pyproject.toml
	@py="$(find_python)"; \
	if [ -z "$$py" ]; then \
	  echo "error: vsr needs Python >= 3.12 (VapourSynth's wheels require it). Install one, e.g. 'pyenv install 3.12' or your distribution's python3.12 package, and run make again." >&2; \
	  exit 1; \
	fi; \
	echo "using $$py ($$($$py -V))"; \
	[ -x $(PY) ] || $$py -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@# vspipe finds this venv's Python through VapourSynth's per-user config (adds one entry)
	$(VENV)/bin/vapoursynth config >/dev/null
	@touch $(STAMP)

DATA ?= $(or $(VSR_DATA),../shared/data)

# 2x super-resolution of the bundled clip (with its audio), the base-layer round trip, --report at a
# low rate, then the image benchmark on Set5 when
# the data set is there (../shared/data, or VSR_DATA).
demo: $(STAMP)
	@mkdir -p out/demo
	$(VENV)/bin/vsr-transcode --upscale samples/bbb_480x270.mp4 -o out/demo/bbb_x2.mkv --overwrite
	@# the encoder side decides the resolution on probes (full size, the 2/3 layer or the 2x layer): on
	@# this clip the 2/3 layer wins at the default CRF 18 and at CRF 36 (restored by the upsampler and a
	@# reduction; the summary line gives each size's probe score)
	$(VENV)/bin/vsr-transcode samples/bbb_480x270.mp4 -o out/demo/bbb.vsr.mkv --overwrite
	$(VENV)/bin/vsr-transcode out/demo/bbb.vsr.mkv -o out/demo/bbb_restored.mkv --overwrite
	$(VENV)/bin/vsr-transcode samples/bbb_480x270.mp4 -o out/demo/bbb_crf36.vsr.mkv --crf 36 --overwrite
	$(VENV)/bin/vsr-transcode out/demo/bbb_crf36.vsr.mkv -o out/demo/bbb_crf36_restored.mkv --overwrite
	@# --report: the layer auto chooses at the rate of a full-size CRF 38 encode (the 2/3 layer), beside
	@# a native encode at the same rate and the same base layer restored by Lanczos-3; the verdict line
	@# says which side wins and by how much
	$(VENV)/bin/vsr-transcode --report samples/bbb_480x270.mp4 --crf 38
	@if [ -d "$(DATA)/Set5" ]; then \
	  $(VENV)/bin/vsr-bench sr --data "$(DATA)" --sets Set5 --out out/demo --save-images out/demo/images --quiet && \
	  echo "upscaled Set5 images (bicubic, lanczos and each model): out/demo/images/Set5/"; \
	else echo "note: $(DATA)/Set5 not found; skipping the image benchmark (set VSR_DATA)"; fi

test: $(STAMP)
	$(PY) -m pytest -q

# Everything, the slow tests too.
test-all: $(STAMP)
	$(PY) -m pytest -q -m ''

clean:
	rm -rf $(VENV) build out *.egg-info
