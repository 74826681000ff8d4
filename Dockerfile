# syntax=docker/dockerfile:1
#
# Riverbed image: one image, five components. The component is the argument:
#   docker run IMAGE                        -> riverbed run api (the default CMD)
#   docker run IMAGE run agents|flow|sink-redis|sink-clickhouse
# KAFKA_BOOTSTRAP, REDIS_URL and CLICKHOUSE_URL must be set for `run`; see docker-compose.yml.

# ---- build stage: resolve and install everything into a self-contained venv -------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Copy only what the wheel needs (the packages listed in pyproject.toml), so local state such as
# .git, .riverbed/ or tests never reaches the build. pyproject names README.md as the readme; it
# is optional for setuptools (a warning when absent), so it is not copied here.
COPY pyproject.toml ./
COPY riverbed/ riverbed/
COPY schemas/ schemas/
COPY streams/ streams/
COPY sinks/ sinks/
COPY api/ api/
COPY connectors/ connectors/
COPY notifier/ notifier/
COPY control/ control/

# A regular (non-editable) install. cramjam is aiokafka's codec library: the Faust agents need it
# to read lz4-compressed batches, and the deployment files set RIVERBED_KAFKA_COMPRESSION=lz4
# (see the comment on kafka_compression in riverbed/settings.py).
RUN pip install . "cramjam>=2.8"

# ---- runtime stage: the venv only, no build context, no pip cache -----------------------------
FROM python:3.11-slim

# RIVERBED_HOST: containers must listen on all interfaces (the settings default is 127.0.0.1).
# RIVERBED_DATA_DIR: absolute and owned by the runtime user; Faust keeps its datadir under it.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RIVERBED_HOST=0.0.0.0 \
    RIVERBED_API_PORT=8080 \
    RIVERBED_DATA_DIR=/var/lib/riverbed

# Fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify the user without a name lookup.
RUN groupadd --system --gid 10001 riverbed \
    && useradd --system --uid 10001 --gid riverbed --home-dir /var/lib/riverbed \
        --no-create-home --shell /usr/sbin/nologin riverbed \
    && mkdir -p /var/lib/riverbed \
    && chown riverbed:riverbed /var/lib/riverbed

COPY --from=build /opt/venv /opt/venv

WORKDIR /var/lib/riverbed
USER 10001:10001

EXPOSE 8080

# `riverbed` runs as PID 1. The API, the agents and the sinks install SIGTERM handlers, but the
# Bytewax flow does not, and the kernel drops a signal with no handler sent to PID 1. SIGINT
# (KeyboardInterrupt) stops all five components cleanly, so it is the stop signal. containerd
# and CRI-O also use the image's stop signal for Kubernetes pods.
STOPSIGNAL SIGINT

# Only the api component serves HTTP. docker-compose.yml turns this check off for the other
# components. /healthz answers once startup is done (topics ensured, schemas registered).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RIVERBED_API_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["riverbed"]
CMD ["run", "api"]
