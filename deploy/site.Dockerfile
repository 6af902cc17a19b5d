# The site image: `fedrad site join`, a Flower SuperNode that answers the study from the
# site's feature table. Build from the repository root:
#   docker build -f deploy/site.Dockerfile -t fedrad-site:0.1.0 .
# Needs only an outbound connection to the aggregator; the data volume is mounted read-only.
# It runs only the FedRad installed in it: an app the aggregator sends that carries code is refused.
FROM python:3.11.11-slim-bookworm

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 \
    FLWR_TELEMETRY_ENABLED=0 \
    FLWR_DISABLE_UPDATE_CHECK=1

RUN groupadd --gid 10001 fedrad && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin fedrad

WORKDIR /opt/fedrad
COPY deploy/requirements.lock ./
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" -r requirements.lock
COPY pyproject.toml README.md ./
COPY common common
COPY client client
COPY server server
COPY simulations simulations
RUN pip install --no-cache-dir --no-deps /opt/fedrad
# The SuperNode's app processes are FedRad's: `flwr-clientapp` runs only the ClientApp
# installed above, whatever app the aggregator sends (client/trusted_supernode.py). Written
# here, as /tmp is mounted noexec.
ENV FEDRAD_APP_COMMANDS=/opt/fedrad/app-commands
RUN python -c "from pathlib import Path; from fedrad.client.trusted_supernode import app_commands; app_commands(Path('/opt/fedrad/app-commands'))"

USER 10001:10001
WORKDIR /home/fedrad
VOLUME ["/data"]
# healthy while the SuperNode process runs (it retries the aggregator by itself)
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import pathlib, sys; sys.exit(not any(b'flower-supernode' in p.read_bytes() for p in pathlib.Path('/proc').glob('[0-9]*/cmdline')))"]
ENTRYPOINT ["fedrad"]
CMD ["site", "join", "--help"]
