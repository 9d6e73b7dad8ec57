"""freshvec's shared core."""
