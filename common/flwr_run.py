"""What `flwr run` says on this repository: FedRad runs through its own commands.

The root pyproject names this module as the package of its Flower components, so that
`flwr run` imports it while validating the app, before it starts a SuperLink, builds or
submits anything, or installs a package at run time (Flower 1.42 would `uv sync` the
project's dependencies, torch included, into a fresh environment for every run), and
stops with this one line and exit status 1. A study needs the sites' feature tables and
FedRad's own processes: `fedrad simulate` runs the demo in Flower's simulation engine,
`fedrad server start` / `fedrad site join` a real federation.
"""

HINT = (
    "FedRad does not run with `flwr run`: use `fedrad simulate` for the local demo, or "
    "`fedrad server start` (aggregator) and `fedrad site join` (sites) for a federation."
)

raise RuntimeError(HINT)
