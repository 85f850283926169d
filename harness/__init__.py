"""harness: a resource-aware benchmarking harness for fine-tuning transformer classifiers."""

__version__ = "0.1.0"
