"""sidrec: an LLM-based generative recommender with Semantic IDs, as a production MLOps system.

One subpackage per pipeline step (data, store, sids, model, evaluation, decoding, reasoning, features,
serving, orchestration); each step is a plain typed function with a CLI subcommand in its `cli.py`.
No Airflow imports in this package: dags/ wires these functions.
"""

__version__ = "0.1.0"
