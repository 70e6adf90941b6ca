# mailmgr: SES Mail Manager configurations on your own SMTP ingress.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MAILMGR_CONFIG=/etc/mailmgr/mailmgr.yaml

WORKDIR /opt/mailmgr
COPY pyproject.toml constraints.txt README.md ./
COPY mailmgr ./mailmgr
RUN pip install -c constraints.txt . \
    && useradd --system --uid 10001 --home-dir /var/lib/mailmgr --create-home mailmgr \
    && mkdir -p /etc/mailmgr /var/lib/mailmgr/certs \
    && chown -R mailmgr:mailmgr /var/lib/mailmgr

COPY config/container.yaml /etc/mailmgr/mailmgr.yaml

USER 10001
VOLUME ["/var/lib/mailmgr/spool", "/var/lib/mailmgr/archives"]
EXPOSE 2525
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9025/healthz/live', timeout=3).status == 200 else 1)"]
ENTRYPOINT ["mailmgr"]
CMD ["serve"]
