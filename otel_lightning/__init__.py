"""otel-lightning."""
