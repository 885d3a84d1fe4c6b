# The two commands of the README; each sets up the runtimes first (idempotent).
.PHONY: setup demo test
setup:
	bash scripts/setup.sh
demo: setup
	bash scripts/demo.sh
test: setup
	.venv/bin/python -m pytest -q tests
