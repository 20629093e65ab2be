"""The live cluster (above exact): ``state.ClusterState`` (a facade over the ledger, the
reservations, the node specs, the journal and its replay, the audit), the gang planner
(``coschedule.GangPlanner``) and read-only queries. See docs/architecture.md."""
