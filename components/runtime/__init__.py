"""The runtime core: the model's language (runtime.language), constrained decoding (runtime.beam), the served
stages (runtime.transitions, runtime.ranker) and the Recommender that owns a model directory
(runtime.recommender). The Triton backend carries this package whole."""
