"""Keras callbacks: adaptive stopping (seed 000, section 5.4)."""

from keras_optzoo.callbacks.adaptive_stopping import AdaptiveStopping

__all__ = ["AdaptiveStopping"]
