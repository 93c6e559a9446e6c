import sys

from picoface.cli import main

sys.exit(main())
