"""freshvec's control plane: configuration, region placement, the pipeline supervisor and the CLI."""
