import sys

from gs_bench.main import main

sys.exit(main())
