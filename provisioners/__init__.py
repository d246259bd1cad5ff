"""Provisioners: create a pool's cloud side (IAM, network, registry, credentials) from the user's machine."""
