"""`python -m aca_agent` = `aca-agent`."""

import sys

from aca_agent.main import main

sys.exit(main())
