"""dlx: config-driven deep-learning experiments."""

__version__ = "0.1.0"
