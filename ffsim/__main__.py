import sys

from ffsim.cli import main

sys.exit(main())
