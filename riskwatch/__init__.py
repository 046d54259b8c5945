"""riskwatch: a streaming, real-time risk alert engine for market supervision.

The risk logic lives in :mod:`riskwatch.engine` (pure, no I/O); everything
else (replay, streaming, API) calls it.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
