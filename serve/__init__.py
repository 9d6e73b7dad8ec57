"""Ray Serve deployments: the embedding model and the HTTP API."""
