"""Local servers for development, demos and tests (SeaweedFS S3, Redis, Triton, Airflow), all on 127.0.0.1 and
stopped by PID. Production runs these from infra/ (compose, Kubernetes): the pipeline steps never import this
package; only `sidrec demo` (components/demo.py) and the tests start them."""
