"""Keras callbacks: adaptive stopping (seed 000, section 5.4) and curvature logging."""

from keras_optzoo.callbacks.adaptive_stopping import AdaptiveStopping
from keras_optzoo.callbacks.curvature_logger import CurvatureLogger

__all__ = ["AdaptiveStopping", "CurvatureLogger"]
