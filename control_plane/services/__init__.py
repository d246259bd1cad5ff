"""Services: the logic between the API and the store (auth, templating, scheduling, dispatch, reconciliation)."""
