"""The CVFlow hub: a registry of versioned computer-vision model packages.

Layout (one concept per module):

- ``settings``  -- the environment, read once into typed settings
- ``errors``    -- the error hierarchy and its stable machine-readable codes
- ``models``    -- SQLModel tables
- ``db``        -- engines, sessions and migrations
- ``security``  -- passwords, tokens and scopes
- ``storage/``  -- blob store interface with file:// and s3:// backends
- ``services/`` -- the domain logic (accounts, packages, blobs), free of HTTP
- ``api/``      -- the REST API (Starlette routes) over the services
- ``app``       -- builds the Starlette application from settings
- ``cli``       -- the ``cvflow-hub`` command
"""

__version__ = "0.1.0"
