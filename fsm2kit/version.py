"""The package version (one place; ``fsm2kit.__version__`` re-exports it)."""

__version__ = "0.1.0"
