"""dukatd: the dukat sidecar daemon."""
