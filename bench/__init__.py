"""FlowForge's benchmark suite: `make bench` (python -m bench.run) measures the engine
against raw Celery on the same broker and writes bench/results/."""
