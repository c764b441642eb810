import sys

from dpm_server.main import main

sys.exit(main())
