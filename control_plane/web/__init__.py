"""The web dashboard: pages served by the control plane itself (see :mod:`.pages`), signed in with sessions
(:mod:`.sessions`)."""
