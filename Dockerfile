# MedCore console + engine on CPU (the image `medcore launch --target k8s` names for CPU jobs: medcore:VERSION).
#   docker build -t medcore:0.1.0 .
#   docker run --network host -v "$PWD/workspace:/data/workspace" medcore:0.1.0      # console on 127.0.0.1:8501
# GPU hosts: Dockerfile.gpu (CUDA build of the same torch, vLLM). Not built on MedCore's own CI machines (no Docker
# engine there): tests/test_cluster_dockerfiles.py checks these files' structure instead.
FROM python:3.11-slim

# torch first, pinned, from the CPU wheel index: a bare `pip install torch` pulls the multi-GB CUDA build.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# The console binds to loopback by default. Binding beyond it (e.g. --build-arg MEDCORE_BIND_ADDRESS=0.0.0.0, or
# `docker run -e STREAMLIT_SERVER_ADDRESS=0.0.0.0` to publish the port) exposes patient data to the network: do it
# only once access control is configured for the console (users and roles, see README) and behind TLS.
ARG MEDCORE_BIND_ADDRESS=127.0.0.1

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_SERVER_ADDRESS=${MEDCORE_BIND_ADDRESS} \
    STREAMLIT_SERVER_PORT=8501 \
    MEDCORE_HOME=/data/workspace

# gcc/g++/make: DeepSpeed builds its C++ ops with them (below, at image build).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc g++ make \
    && rm -rf /var/lib/apt/lists/*

# Runs as an unprivileged user (uid 1000, as the Kubernetes manifests' securityContext expects).
RUN groupadd --gid 1000 medcore \
    && useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin medcore \
    && mkdir -p /data/workspace \
    && chown -R medcore:medcore /data

WORKDIR /opt/medcore
COPY constraints.txt pyproject.toml README.md ./
COPY medcore ./medcore
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
    && pip install -c constraints.txt .
# DeepSpeed's CPU ops built into the image, not inside the first run; owned by the user that loads them (torch takes a
# lock file in the build folder on every load).
ENV TORCH_EXTENSIONS_DIR=/opt/medcore/torch-extensions
RUN python -m medcore.deepspeed_ops \
    && python -m medcore.deepspeed_ops --check \
    && chown -R medcore:medcore /opt/medcore/torch-extensions
COPY app ./app
COPY configs ./configs
COPY launchers ./launchers
COPY .streamlit ./.streamlit

USER medcore
VOLUME /data
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${STREAMLIT_SERVER_PORT}/_stcore/health', timeout=4)" || exit 1
# Address and port come from STREAMLIT_SERVER_ADDRESS / STREAMLIT_SERVER_PORT (set above; override with -e).
# The address is checked first: beyond loopback only once a console user exists (medcore users add), else it exits 1.
CMD ["sh", "-c", "python -m medcore.access.bind \"$STREAMLIT_SERVER_ADDRESS\" && exec streamlit run app/main.py"]
