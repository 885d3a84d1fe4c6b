# The two commands of the README; each sets up the runtimes first (idempotent).
.PHONY: setup demo test
setup:
	bash scripts/setup.sh
demo: setup
	bash scripts/demo.sh
# Each suite runs in a session of its own (federated/child_session.py), so a TFF worker
# that outlives a test is killed at the end and cannot keep make waiting. The pipeline
# suite runs on two pytest-xdist workers, one test module at a time each (--dist
# loadfile), so a module's pipeline runs (module fixtures) are made once.
test: setup
	.venv/bin/python -m federated.child_session --timeout 3600 -- \
	  .venv/bin/python -m pytest -q -n 2 --dist loadfile tests --ignore=tests/federated
	.venv-federated/bin/python -m federated.child_session --timeout 1800 -- \
	  .venv-federated/bin/python -m pytest -q tests/federated
