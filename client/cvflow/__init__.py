"""cvflow: the thin client for the CVFlow model hub.

The modules here that the hub imports too (``names``, ``versions``, ``paths``,
``manifest``, ``errors``) depend only on the standard library and ``packaging``,
so an edge machine never needs the server's stack.
"""

__version__ = "0.1.0"
