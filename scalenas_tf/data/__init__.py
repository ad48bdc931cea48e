"""Datasets: the embedded procedural `shapes` source and the task pipeline (`pipeline.make_dataset`)."""
