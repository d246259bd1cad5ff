"""pushpool control plane: the API, storage and the services that move flow runs along."""
