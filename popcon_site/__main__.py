"""``python -m popcon_site``: the same as the ``popcon-site`` command."""

import sys

if __name__ == "__main__":
    try:
        from popcon_site.cli import main
    except KeyboardInterrupt:
        # Ctrl-C while the command is still loading.
        if sys.stderr is not None:
            sys.stderr.write("popcon-site: interrupted\n")
        sys.exit(130)
    sys.exit(main())
