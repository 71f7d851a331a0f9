"""Keeps a private ECR registry in sync with public container images, copying only what changed."""
