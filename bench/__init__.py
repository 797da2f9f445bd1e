"""Cost and speed benchmarks (requests and CPU per fire, capacity, lateness): `make bench`.

Every figure is measured for the project and, in the same process and on the
same data, for a plain baseline scheduler (bench/baseline.py). Results go to
bench/RESULTS.md and bench/lateness.svg. Nothing here runs inside `make test`
except the smoke test (tests/functional/test_bench_smoke.py) on tiny sizes.
"""
