#!/usr/bin/env bash
# Fill .gpu/ (ignored by git) with what benchmarks/gpu_check.sh needs on a GPU machine that
# reaches no network, then carry it along (the device tool's `carry: [".gpu"]`):
#   .gpu/site/       open_clip_torch, ftfy, wcwidth: vlbench's needs beyond a torch+CUDA image
#                    (whose package list has torch, torchvision, timm, transformers, safetensors,
#                    huggingface-hub, regex, tqdm, pyyaml, pillow, numpy, scipy, scikit-learn)
#   .gpu/cb-site/    CLIP_benchmark and the packages it adds (webdataset, braceexpand,
#                    pycocoevalcap without its Java jars and METEOR's 60 MB paraphrase table:
#                    CLIP_benchmark imports the module, its retrieval task never runs Java;
#                    and without CLIP_benchmark's 10 MB CuPL prompt file, read only when
#                    --custom_template_file names it): the carried folder must stay small
#   .gpu/cb-python   runs CLIP_benchmark: the check's interpreter with cb-site and site first
#   .gpu/data/flickr8k  the Flickr8k dev split: its 1,000 images, their captions (the dev lines
#                    of Flickr8k.token.txt, in the official format) and the split lists
# Wheels are for CPython 3.12 on x86-64 Linux (the GPU image's), installed with --no-deps into
# plain folders; the versions are this checkout's .venv's where it has the package.
#   bash benchmarks/gpu_prepare.sh [FLICKR8K_DIR]     # default: shared/data/flickr8k beside the checkout
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
FLICKR="${1:-}"
if [ -z "$FLICKR" ]; then  # the shared/ beside the checkout (CI's clone) or beside its parent (a worktree)
    for c in ../shared/data/flickr8k ../../shared/data/flickr8k; do [ -d "$c" ] && FLICKR="$c" && break; done
fi
GPU=.gpu
pin() {  # NAME==VERSION of this venv, or NAME
    local v
    v="$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1" 2>/dev/null || true)"
    if [ -n "$v" ]; then echo "$1==$v"; else echo "$1"; fi
}
install() {  # FOLDER PACKAGE...
    local dest="$1"; shift
    "$PY" -m pip install --quiet --no-deps --no-compile --only-binary=:all: --python-version 3.12 \
        --implementation cp --abi cp312 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --target "$dest" "$@"
}
rm -rf "$GPU/site" "$GPU/cb-site" "$GPU/data"
mkdir -p "$GPU"
install "$GPU/site" "$(pin open_clip_torch)" "$(pin ftfy)" "$(pin wcwidth)"
install "$GPU/cb-site" "$(pin clip_benchmark)" "$(pin webdataset)" "$(pin braceexpand)" "$(pin pycocoevalcap)"
find "$GPU/cb-site/pycocoevalcap" \( -name '*.jar' -o -name 'paraphrase-en.gz' \) -delete
rm -f "$GPU/cb-site/clip_benchmark/datasets/cupl_prompts.json"
cat > "$GPU/cb-python" <<'WRAP'
#!/bin/sh
# CLIP_benchmark's packages, then vlbench's carried ones (open_clip), then the interpreter's
here="$(cd "$(dirname "$0")" && pwd)"
PYTHONPATH="$here/cb-site:$here/site" exec "${VLBENCH_GPU_PYTHON:-python3}" "$@"
WRAP
chmod +x "$GPU/cb-python"
if [ -f "$FLICKR/text/Flickr_8k.devImages.txt" ]; then
    mkdir -p "$GPU/data/flickr8k/text" "$GPU/data/flickr8k/Flicker8k_Dataset"
    cp "$FLICKR"/text/Flickr_8k.*Images.txt "$GPU/data/flickr8k/text/"
    grep -F -f "$FLICKR/text/Flickr_8k.devImages.txt" "$FLICKR/text/Flickr8k.token.txt" \
        > "$GPU/data/flickr8k/text/Flickr8k.token.txt"
    while read -r name; do
        [ -n "$name" ] && cp "$FLICKR/Flicker8k_Dataset/$name" "$GPU/data/flickr8k/Flicker8k_Dataset/"
    done < "$FLICKR/text/Flickr_8k.devImages.txt"
else
    echo "gpu-prepare: no Flickr8k at ${FLICKR:-shared/data/flickr8k}: the vs_clip_benchmark part will be skipped" >&2
fi
du -sh "$GPU"/* | sed 's/^/gpu-prepare: /'
echo "gpu-prepare: .gpu is $(du -sm "$GPU" | cut -f1) MB; with the checkout it must stay under the device tool's 64 MiB"
