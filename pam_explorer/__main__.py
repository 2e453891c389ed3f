"""``python -m pam_explorer``: the command line (:mod:`pam_explorer.cli`)."""
import sys

from pam_explorer.cli import main

if __name__ == "__main__":
    sys.exit(main())
