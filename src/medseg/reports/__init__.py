"""Training curves, overlay images and Markdown reports."""

from medseg.reports.curves import plot_progress
from medseg.reports.overlays import overlay, to_display_rgb

__all__ = ["overlay", "plot_progress", "to_display_rgb"]
