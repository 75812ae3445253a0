"""The message for `import keras_optzoo` when Keras's backend is not installed.

Keras picks its backend at import, from `KERAS_BACKEND`, else the "backend"
key of `$KERAS_HOME/keras.json` (default `~/.keras/keras.json`), else
TensorFlow; when that package is missing Keras fails with a bare "No module
named 'tensorflow'". This says where the choice came from and what to set.
"""

import importlib.util
import json
import os

BACKEND_PACKAGES = ("tensorflow", "jax", "torch")


def _config_file():
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "keras.json")


def _where_chosen(backend):
    if "KERAS_BACKEND" in os.environ:
        return f"KERAS_BACKEND={os.environ['KERAS_BACKEND']}"
    path = _config_file()
    try:
        with open(path) as f:
            if json.load(f).get("backend") == backend:
                return f'"backend": "{backend}" in {path}, which Keras writes with its default on first use'
    except (OSError, ValueError, AttributeError):
        pass
    return "Keras's default, as KERAS_BACKEND is not set"


def _installed():
    found = []
    for name in BACKEND_PACKAGES:
        try:
            if importlib.util.find_spec(name) is not None:
                found.append(name)
        except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
            pass
    return found


def message(missing):
    """The explanation for a failed `import keras` whose backend `missing` is absent."""
    others = [b for b in _installed() if b != missing]
    use = others[0] if others else "jax"
    have = f"Installed backends: {', '.join(others)}. " if others else "No Keras backend is installed. "
    return (
        f"keras_optzoo imports Keras, whose backend is '{missing}' ({_where_chosen(missing)}), but the "
        f"'{missing}' package is not installed. {have}Choose the backend with the KERAS_BACKEND "
        f"environment variable, e.g. `KERAS_BACKEND={use} python train.py`, or set "
        f'"backend": "{use}" in {_config_file()}; or install the missing one: '
        f'pip install "keras-optzoo[{missing}]".'
    )
