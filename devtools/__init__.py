"""Local stand-ins for Docker Hub, ECR and CodeBuild, shared by the tests and the sandbox (no Docker, no AWS)."""
