"""Alerts: rules, lifecycle, routing, grouping and signed webhook delivery.

Pure logic: :mod:`.config` (rules/receivers), :mod:`.lifecycle`, :mod:`.routing`,
:mod:`.grouping`, :mod:`.payload`, :mod:`.signing`, :mod:`.safety`.
With Redis: :mod:`.store`, :mod:`.outbox`, :mod:`.intake`; over HTTP:
:mod:`.delivery`; the process: :mod:`.dispatcher`.
"""
