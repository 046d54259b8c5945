"""Detectors: one module per signal family, one line each in :data:`REGISTRY`.

A new detector is one new module, one line here and one entry under
``detectors:`` in the config.
"""

from .base import Detector, Signals
from .complaints import ComplaintDetector
from .inspections import InspectionDetector
from .records import RecordDetector
from .sensors import SensorDetector

__all__ = ["REGISTRY", "Detector", "Signals"]

REGISTRY: dict[str, type[Detector]] = {
    ComplaintDetector.name: ComplaintDetector,
    SensorDetector.name: SensorDetector,
    InspectionDetector.name: InspectionDetector,
    RecordDetector.name: RecordDetector,
}
