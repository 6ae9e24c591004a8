import sys

from kdumpy.cli import main

sys.exit(main())
