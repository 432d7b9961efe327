# genarm-serve, CPU (the embedded demo). The CUDA image: Dockerfile.cuda.
#
#   docker build -t genarm-serve .
#   docker run -p 8000:8000 -v genarm-cache:/home/genarm/.cache genarm-serve
#   docker run -p 8000:8000 -v ./my.yaml:/config.yaml genarm-serve --config /config.yaml
#
# The install steps are deploy/image/install.sh (tested outside Docker by
# tests/test_image_recipe.py in a fresh virtualenv, as the image runs them).
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1

# gcc/g++: torch.compile (inductor) builds C++ kernels at run time on CPU.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc g++ make libnuma1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 genarm

WORKDIR /app
COPY pyproject.toml README.md ./
COPY genarm genarm
COPY server server
COPY arm_kernels arm_kernels
COPY clients clients
COPY configs configs
COPY deploy/image deploy/image
RUN TORCH_INDEX_URL="$TORCH_INDEX_URL" sh deploy/image/install.sh cpu

# Everything from here runs as the unprivileged user; the demo's base model
# and every cache (merged ARMs, compiled graphs) live under its HOME.
USER genarm
ENV HOME=/home/genarm
RUN genarm prepare-demo
# A volume keeps the model and compile caches across containers: the first
# start compiles (minutes on a few cores), later starts load the result.
VOLUME ["/home/genarm/.cache"]

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=15m --retries=3 \
    CMD ["python", "/app/deploy/image/healthcheck.py"]
ENTRYPOINT ["genarm", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--config", "configs/demo.yaml"]
