# mailmgr: SES Mail Manager configurations on your own SMTP ingress.
# Any Debian-like base with Python 3.11+ and its venv module: python:3.11-slim (default), or a
# local one (the tests use a bootstrapped Debian bookworm with python3-venv).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# A venv of our own: works on python:3.11-slim and on Debian's python3 (PEP 668 forbids
# system-wide pip installs there, and it has no `python` command).
ENV VIRTUAL_ENV=/opt/mailmgr/venv \
    PATH=/opt/mailmgr/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MAILMGR_CONFIG=/etc/mailmgr/mailmgr.yaml

WORKDIR /opt/mailmgr
COPY pyproject.toml constraints.txt README.md ./
COPY mailmgr ./mailmgr
# pip_ca: optional build secret, a CA bundle pip must trust (a TLS-inspecting proxy); mounted for
# this step only, never stored in a layer.
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && python3 -m venv "$VIRTUAL_ENV" \
    && "$VIRTUAL_ENV/bin/pip" install --no-cache-dir -c constraints.txt . \
    && useradd --system --uid 10001 --home-dir /var/lib/mailmgr --create-home mailmgr \
    && mkdir -p /etc/mailmgr /var/lib/mailmgr/certs /var/lib/mailmgr/spool /var/lib/mailmgr/archives \
    && chown -R mailmgr:mailmgr /var/lib/mailmgr

COPY config/container.yaml /etc/mailmgr/mailmgr.yaml

USER 10001
VOLUME ["/var/lib/mailmgr/spool", "/var/lib/mailmgr/archives"]
# 2525: SMTP; 9025: the admin listener (/metrics, /healthz/live, /healthz/ready).
EXPOSE 2525 9025
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/opt/mailmgr/venv/bin/python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9025/healthz/live', timeout=3).status == 200 else 1)"]
ENTRYPOINT ["mailmgr"]
CMD ["serve"]
