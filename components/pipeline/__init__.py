"""The production pipeline: its steps as plain functions (what the Airflow DAGs, the KFP pipeline, the
`sidrec pipeline` CLI and `sidrec demo` call), handing each other artifact versions through the store."""
