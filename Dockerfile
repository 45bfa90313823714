# The CodeAct Web application image: web, worker, beat and the egress proxy.
#
# `make images` (scripts/build-images) builds it offline: BASE_IMAGE is a Debian
# trixie minbase made with mmdebstrap and `docker import`ed, which already has
# python3, Squid and iptables, and wheels/ holds every requirement, downloaded
# by pip on the host for the base's Python. Where a registry is reachable the
# same file builds on the official image (Python >= 3.12; Squid and iptables
# then come from apt):
#   scripts/build-images --app-base python:3.12-slim-trixie
ARG BASE_IMAGE=codeact-base-app:trixie
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CODEACT_VAR_DIR=/var/lib/codeact PATH=/opt/venv/bin:$PATH
RUN (command -v squid >/dev/null && command -v iptables >/dev/null) || (apt-get update \
      && apt-get install -y --no-install-recommends squid iptables ca-certificates \
      && rm -rf /var/lib/apt/lists/*)

COPY requirements.txt /opt/build/requirements.txt
COPY wheels/ /opt/build/wheels/
RUN python3 -m venv /opt/venv \
    && pip install --no-index --no-cache-dir --find-links /opt/build/wheels \
         -r /opt/build/requirements.txt \
    && rm -rf /opt/build \
    && (getent passwd 1000 >/dev/null || useradd --uid 1000 --user-group --home-dir /app codeact) \
    && mkdir -p /var/lib/codeact/static && chown -R 1000:1000 /var/lib/codeact

WORKDIR /app
COPY app/ /app/
# Static files with content-hashed names, collected once at build time. WhiteNoise
# serves them with far-future cache headers; the reverse proxy keeps a copy.
RUN SECRET_KEY=build-only CODEACT_PROFILE=production python manage.py collectstatic --no-input -v 0
USER 1000:1000
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "codeact_web.asgi:application"]
