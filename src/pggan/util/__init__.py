"""The bottom layer: helpers that import nothing else of pggan (files, image grids, devices, processes, errors)."""
