"""Applications on top of the library: what the `flyenv` commands and the examples run.

`train` (PPO, `flyenv train`), `bench` (the env benchmark, `flyenv bench`), `demo` (the pipeline
end to end, `flyenv demo`), `replay` (films a reference replayed in the env, `flyenv replay`),
`plots` (figures), `machine` (the machine a benchmark ran on). The core packages (`body`,
`motion`, `ik_preprocess`, `sim`, `envs`, `wrappers`) never import them; the CLI imports each
only for its own subcommand.
"""
