"""A learned ranking stage over the generative candidates and item co-occurrence candidates.

Why: on amazon-industrial the generative beam misses targets that plain co-occurrence counts find (recent items'
successors, items bought near them), and a fixed two-way blend (decoding.transitions) cannot weigh evidence by
how much of it there is. candidates.py pools the sources and computes one feature row per candidate;
ranker.py trains a LightGBM lambdarank model on valid rows (features fit on train, as the blend weight is
chosen) and reorders each row's candidates.
"""
