"""`python -m data.build`: the dataset builder lives in data/dataset/build.py."""

import sys

from data.dataset.build import main

if __name__ == "__main__":
    sys.exit(main())
