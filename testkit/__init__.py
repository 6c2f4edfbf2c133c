"""What the tests and the benchmarks share: real worker processes, waiting for
conditions, this session's own database and Redis database. Not part of FlowForge's
package (pyproject.toml ships flowforge, dags, runs and workflows only)."""
