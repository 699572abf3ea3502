"""Finding model files: paths, the configured default, the bundled SmolLM2."""
