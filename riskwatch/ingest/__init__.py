"""Ingestion gateways: HTTP (``riskwatch ingest``), MQTT (``riskwatch ingest-mqtt``) and file
import (``riskwatch import``) into the input topics, validated with the engine's schemas,
batched per partition, with back-pressure instead of unbounded buffering."""
