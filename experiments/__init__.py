"""The experiment side: the benchmark (`sidrec benchmark`), selection and try_* scripts, speed benchmarks and their
results. It imports the product (components); the product never imports it."""
