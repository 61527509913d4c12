"""Domain logic of the registry, free of HTTP: each function takes a session and a principal."""
