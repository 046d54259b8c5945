"""Alert rules, lifecycle, routing and webhook delivery (issue 4; not built yet).

The engine already emits ``alert_candidate`` events with a dedup key.
"""
