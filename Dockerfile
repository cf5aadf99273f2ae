# dukatd, the dukat daemon, in a container. The same steps as `make install`, minus the dev
# tools: a plain `pip install '.[daemon,cli]'` of this checkout (the daemon and the `dukat`
# command line, for `docker exec dukatd dukat status`).
#
#   docker build -t dukatd .
#   docker run -d --name dukatd -v dukatd-run:/run/dukatd -v dukatd-state:/var/lib/dukatd dukatd
#   docker exec dukatd dukat status
#   # the journal (jobs survive restarts and upgrades) is in the volume /var/lib/dukatd
#   # clients in other containers mount the same volume and dial unix:/run/dukatd/dukatd.sock
#   # (the socket is mode 0660: run them as uid/gid 10001, or in group 10001)
#
# Stop with `docker stop` (SIGTERM): dukatd drains in shutdown_grace (5 s) plus kill_grace
# (2 s) for running tasks, inside Docker's default 10 s before it sends SIGKILL.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package is built from (pyproject's readme and licence file must be there too).
COPY pyproject.toml README.md LICENSE ./
COPY dukat ./dukat
COPY dukatd ./dukatd
RUN pip install '.[daemon,cli]' && rm -rf /src

# A user of its own; the socket directory is group-readable (0750) like systemd's
# RuntimeDirectoryMode in systemd/dukatd.service, the state directory private.
RUN groupadd --system --gid 10001 dukatd \
    && useradd --system --uid 10001 --gid dukatd --home-dir /var/lib/dukatd dukatd \
    && install -d -o dukatd -g dukatd -m 0750 /run/dukatd \
    && install -d -o dukatd -g dukatd -m 0700 /var/lib/dukatd
USER dukatd
WORKDIR /var/lib/dukatd

# Options as DUKATD_* variables, so that `python -m dukatd.health` (below) reads the same
# addresses; `docker run ... dukatd --allow-exec` adds flags on top.
ENV DUKATD_LISTEN=unix:/run/dukatd/dukatd.sock \
    DUKATD_STATE_DIR=/var/lib/dukatd \
    DUKAT_ADDRESS=unix:/run/dukatd/dukatd.sock
# TCP as well, for clients outside the container. Beyond loopback dukatd requires TLS and a
# token, or --insecure said out loud; publish the port only where that is acceptable:
# ENV DUKATD_LISTEN=unix:/run/dukatd/dukatd.sock,0.0.0.0:50051 DUKATD_INSECURE=1
# EXPOSE 50051
# /metrics listens on 127.0.0.1:9464 by default, unreachable from outside the container;
# to scrape it: ENV DUKATD_METRICS_LISTEN=0.0.0.0:9464 and EXPOSE 9464.
VOLUME ["/run/dukatd", "/var/lib/dukatd"]

STOPSIGNAL SIGTERM
# There is no grpc_health_probe in the image: dukatd ships its own. NOT_SERVING (draining)
# and an unreachable socket both count as unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-m", "dukatd.health", "--timeout", "3"]

# dukatd runs as PID 1: it then reaps what exec tasks leave behind itself (dukatd/orphans.py),
# so the container collects no <defunct> processes with or without `docker run --init`.
ENTRYPOINT ["dukatd"]
