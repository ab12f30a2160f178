"""SparseBench: a benchmark harness for sparse (L0) adversarial attacks."""

__version__ = "0.1.0"
