FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY riskwatch ./riskwatch
COPY config ./config
RUN pip install --no-cache-dir .
ENV RISKWATCH_CONFIG_PATH=/app/config/riskwatch.yaml \
    RISKWATCH_DATA_DIR=/data
VOLUME /data
ENTRYPOINT ["riskwatch"]
