"""The bottom layer: validated configs, registries, safe file I/O, seeds and devices, process groups,
metric names and the results schema. It imports nothing else of the package."""
