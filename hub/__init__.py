"""The CVFlow hub: a registry of versioned computer-vision model packages.

Layout (one concept per module):

| module | what it holds |
| --- | --- |
| ``settings`` | the environment, read once into typed settings |
| ``errors`` | ``HubError`` and the table of stable machine-readable codes |
| ``models`` | SQLModel tables (``migrations/`` changes them) |
| ``db`` | engines, sessions and migrations |
| ``context`` | ``HubContext``, ``ctx``, ``run_sync`` and ``in_session``: a request's one unit of work |
| ``security`` | passwords, tokens and scopes |
| ``redact`` | credentials kept out of log lines |
| ``storage/`` | blob store interface with file:// and s3:// backends |
| ``services/`` | the domain logic, free of HTTP: accounts, access rules, packages, repositories |
| ``api/`` | the REST API (Starlette routes) over the services |
| ``mirror/`` | the change feed, mirror sync, pull-through upstreams, bundles |
| ``app`` | builds the Starlette application from settings (a composition root) |
| ``cli/`` | the ``cvflow-hub`` command (the other composition root) |
| ``demo`` | publishes ``examples/`` for ``cvflow-hub serve --demo`` |
"""

__version__ = "0.1.0"
