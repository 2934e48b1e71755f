import sys

from data.parse.tracefile import main

sys.exit(main())
