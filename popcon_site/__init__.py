"""popcon-site: counts the installed libraries that Python processes import.

This module is imported at every interpreter start-up (the ``.pth`` file
imports ``popcon_site._bootstrap``), so it holds the version and nothing else.
"""

__version__ = "0.1.0"
