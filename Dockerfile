# The CodeAct Web application image (web, worker and beat share it).
# Sandboxes use their own image, built from sandbox/image/.
FROM python:3.12-slim-bookworm

ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 CODEACT_VAR_DIR=/var/lib/codeact
WORKDIR /app

# Squid and iptables serve the egress proxy (the compose file's `egress` service).
RUN apt-get update \
    && apt-get install -y --no-install-recommends squid iptables \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt \
    && useradd --system --uid 1000 --home-dir /app codeact \
    && mkdir -p /var/lib/codeact/static && chown -R codeact /var/lib/codeact

COPY . .
USER codeact
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "codeact_web.asgi:application"]
