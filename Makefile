# Everything a fresh machine needs: `make run` ingests MNIST into the embedded store, `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test reports clean

$(BIN)/cbir: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/cbir

run: install
	$(BIN)/ingest run

test: install
	$(BIN)/python -m pytest -q

# The committed quality reports (docs/reports): every encoder on both data sets, all 10,000 test queries.
reports: install
	$(BIN)/cbir eval compare --queries all --out docs/reports/mnist
	$(BIN)/cbir eval run --queries all --out docs/reports/mnist/dae-umap
	$(BIN)/cbir eval run --queries all --encoder dae --out docs/reports/mnist/dae
	$(BIN)/cbir eval compare --dataset fashion-mnist --queries all --out docs/reports/fashion-mnist
	$(BIN)/cbir eval run --dataset fashion-mnist --queries all --out docs/reports/fashion-mnist/dae-umap

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
