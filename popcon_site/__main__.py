"""``python -m popcon_site``: the same as the ``popcon-site`` command."""

import sys

from popcon_site.cli import main

if __name__ == "__main__":
    sys.exit(main())
