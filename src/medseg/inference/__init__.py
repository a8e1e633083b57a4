"""Prediction on raw images and (later) export."""

from medseg.inference.predictor import Predictor

__all__ = ["Predictor"]
