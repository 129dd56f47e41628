"""The engine: the index of jobs, dispatch, workers' results, leases, flows and operators' actions,
and the store operations they cause."""
