"""medseg: 2D medical image segmentation with U-shaped networks."""

__version__ = "0.1.0"
