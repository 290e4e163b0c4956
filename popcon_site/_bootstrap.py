"""The PEP 829 entry point named by ``popcon_site.start``.

From Python 3.15, ``site`` runs ``popcon_site._bootstrap:activate`` instead
of the import line of ``popcon_site.pth``.  Importing this module imports the
``popcon_site`` package, whose start-up hook does the work; both paths end in
the same idempotent :func:`popcon_site.activate`.
"""

from popcon_site import activate

__all__ = ["activate"]
