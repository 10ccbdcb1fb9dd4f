"""Streaming L2 features: the schema and the incremental calculator."""

from daemon.features.calculator import FeatureCalculator, FeatureSample
from daemon.features.schema import FEATURES, NAMES, SCHEMA_VERSION

__all__ = ["FEATURES", "NAMES", "SCHEMA_VERSION", "FeatureCalculator", "FeatureSample"]
