import sys

from .quality import main

if __name__ == "__main__":
    sys.exit(main())
