"""Tasks: a real data loader, model builders, loss and metrics for each experiment."""

from keras_optzoo.tasks import mnist

__all__ = ["mnist"]
