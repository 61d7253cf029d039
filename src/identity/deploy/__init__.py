"""Deployment assets shipped with the package: the Envoy config template."""
