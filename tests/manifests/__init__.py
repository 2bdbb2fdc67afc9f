"""Schema and cross-reference tests for the rendered manifests (build/manifests, `make render`)."""
