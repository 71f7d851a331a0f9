"""The copy program the CodeBuild project runs; embedded in template.yaml by `make buildspec`."""
