"""genarm-serve: GenARM test-time alignment on vLLM."""

__version__ = "0.1.0"
