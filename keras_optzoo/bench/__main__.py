import sys

from keras_optzoo.bench import main

sys.exit(main())
