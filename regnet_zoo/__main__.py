import sys

from regnet_zoo.cli import main

sys.exit(main())
