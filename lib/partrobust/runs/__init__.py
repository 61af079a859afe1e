"""What executes: the run config and its identity, one run in its folder, sweeps and params files, the
pipeline, the cluster launcher, notebook parameters and execution, and the benchmark and figures commands."""
