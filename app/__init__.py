"""IWRS: randomization, blinding and drug supply for clinical trials."""

__version__ = "0.1.0"
