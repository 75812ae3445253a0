"""keras-optzoo: the textbook optimizers, first and second order, for Keras 3.

Every optimizer is a real `keras.optimizers.Optimizer` subclass written in
`keras.ops`, so the same code runs on the TensorFlow, JAX and PyTorch backends.
"""

try:
    import keras  # noqa: F401  (Keras imports its backend here)
except ModuleNotFoundError as _err:
    from keras_optzoo import _install_hint

    _missing = (_err.name or "").split(".")[0]
    if _missing not in _install_hint.BACKEND_PACKAGES:
        raise
    raise ModuleNotFoundError(_install_hint.message(_missing), name=_missing) from _err

from keras_optzoo import callbacks, curvature, optimizers, tasks
from keras_optzoo.curvature import with_curvature
from keras_optzoo.optimizers import *  # noqa: F403  (the classes and `get`)

__version__ = "0.3.1"

__all__ = ["callbacks", "curvature", "optimizers", "tasks", "with_curvature", *optimizers.__all__]
