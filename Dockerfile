# One image for all four services; the command picks the service:
#   docker run IMAGE serve gateway|risk|trading|settlement
# Installed with the same `pip install` of this project as the README (without the dev extra).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/backbone
COPY pyproject.toml README.md ./
COPY backbone ./backbone
COPY ops ./ops
COPY gateway ./gateway
COPY risk ./risk
COPY trading ./trading
COPY settlement ./settlement
RUN /opt/backbone/bin/pip install .

FROM python:3.11-slim-bookworm
ENV PATH=/opt/backbone/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BACKBONE_LOG_FORMAT=json \
    BACKBONE_LISTEN_ADDRESS=0.0.0.0:50051
RUN groupadd --system --gid 10001 backbone \
    && useradd --system --uid 10001 --gid backbone --home-dir /var/lib/backbone --create-home backbone
COPY --from=build /opt/backbone /opt/backbone
USER 10001:10001
WORKDIR /var/lib/backbone
EXPOSE 50051
ENTRYPOINT ["backbone"]
CMD ["serve", "gateway"]
