import sys

from dejavu.cli import main

sys.exit(main())
