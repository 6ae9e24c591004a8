import sys

from kdumpy.capture.main import main

sys.exit(main())
