"""The Faust app, topics, tables and agents around :class:`riskwatch.engine.Engine` (issue 3; not built yet)."""
