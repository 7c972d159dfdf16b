# MedCore console + engine on CPU. For GPU hosts, start from a CUDA base image and install the CUDA build
# of torch==2.13.0 before `pip install .[gpu]`.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    MEDCORE_HOME=/data/workspace
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ make && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/medcore
COPY pyproject.toml README.md ./
COPY medcore ./medcore
# Pass TORCH_INDEX_URL=<your CPU wheel index> to avoid the multi-GB CUDA build of torch.
ARG TORCH_INDEX_URL=
RUN pip install ${TORCH_INDEX_URL:+--index-url $TORCH_INDEX_URL} torch==2.13.0 && pip install .
COPY app ./app
COPY configs ./configs
COPY launchers ./launchers
COPY .streamlit ./.streamlit
VOLUME /data
EXPOSE 8501
# Inside a container the console must listen beyond loopback; publish the port only to trusted networks.
CMD ["streamlit", "run", "app/main.py", "--server.address", "0.0.0.0", "--server.port", "8501"]
