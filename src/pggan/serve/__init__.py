"""``pggan serve``: a local web page to watch runs and explore trained generators (no build step, nothing
loaded from the internet)."""
