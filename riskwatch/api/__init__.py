"""The internal HTTP API (FastAPI). Until the API issue lands: health, entities, metrics."""
