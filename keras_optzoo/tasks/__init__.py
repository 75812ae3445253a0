"""Tasks: a real data loader, model builders, loss and metrics for each experiment."""

from keras_optzoo.tasks import karate, mnist, text

__all__ = ["karate", "mnist", "text"]
