# The aggregator image: `fedrad server start`, a Flower SuperLink that runs the study.
# Build from the repository root:
#   docker build -f deploy/aggregator.Dockerfile -t fedrad-aggregator:0.1.0 .
# Its SuperLink's port (8000) is for the gateway only (deploy/compose.yaml): sites connect
# to the gateway's. Its state and results live in /var/lib/fedrad.
FROM python:3.11.11-slim-bookworm

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 \
    FLWR_TELEMETRY_ENABLED=0 \
    FLWR_DISABLE_UPDATE_CHECK=1

RUN groupadd --gid 10001 fedrad && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin fedrad \
    && mkdir -p /var/lib/fedrad \
    && chown fedrad:fedrad /var/lib/fedrad

WORKDIR /opt/fedrad
COPY deploy/requirements.lock ./
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" -r requirements.lock
COPY pyproject.toml README.md ./
COPY common common
COPY client client
COPY server server
COPY simulations simulations
RUN pip install --no-cache-dir --no-deps /opt/fedrad

USER 10001:10001
WORKDIR /home/fedrad
VOLUME ["/var/lib/fedrad"]
# reached by the gateway on a private network, never published: its Control API has no authentication
EXPOSE 8000
# healthy while the SuperLink accepts connections on its port
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import socket; socket.create_connection(('127.0.0.1', 8000), timeout=3).close()"]
ENTRYPOINT ["fedrad"]
CMD ["server", "start", "--help"]
