import sys

from data.collect.command import main

sys.exit(main())
