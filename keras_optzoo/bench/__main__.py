import sys

from keras_optzoo.bench import main

if __name__ == "__main__":  # not on import (the API docs import every module)
    sys.exit(main())
