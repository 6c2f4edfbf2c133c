"""The dashboard's views, one module per area: dags (the DAG list and a DAG's page),
runs (runs, a run's page, a task's page, and their repair buttons), ops (dead letters,
workers, status). Views are thin: they call runs.services, runs.repair and dags.services
as the API does, and the query helpers beside them."""
