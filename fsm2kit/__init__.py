"""fsm2kit: training-free few-shot medical image segmentation with SAM2."""

__version__ = "0.1.0"
