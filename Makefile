# Everything installs from scratch into .venv with pip (uv/poetry do not see the local torch wheels).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck bench clean arm-toolchain

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch/torchvision pinned: these exact releases install from local disk (see pyproject.toml)
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fusion demo
	$(BIN)/fusion pretrain
	$(BIN)/fusion probe --checkpoint runs/pretrain/checkpoints/final.ckpt --baseline random
	# deploy: distil an int8 student (and a no-dropout baseline), export C with the power table,
	# report accuracy for every sensor subset (about 2 minutes on 2 cores)
	$(BIN)/fusion distill --teacher runs/pretrain/checkpoints/final.ckpt --steps 150 --out runs/student
	$(BIN)/fusion export --student runs/student --format c --power configs/power_synthetic.yaml --out runs/student_c
	$(BIN)/fusion degrade --student runs/student --power configs/power_synthetic.yaml --plot runs/student_degradation.png
	# on-device learning: replay the test chips, halve the optical gain at sample 100, watch the
	# online head recover (about 15 s)
	$(BIN)/fusion online --student runs/student --drift gain:syn_optical=0.5@100 --plot runs/online.png
	# data unit tests with failure mining; status 1 means a test failed (the suite holds a strict
	# threshold a short pretraining may miss), 2 would be bad input
	$(BIN)/fusion datatest --suite configs/datatest_synthetic.yaml --no-progress \
	  --checkpoint runs/pretrain/checkpoints/final.ckpt --junit runs/datatest/synthetic.xml; \
	  test $$? -le 1

# Cortex-M cross-compiler and emulator for `fusion firmware` and its tests (Debian packages; needs
# root). Optional: without them those tests are skipped with the reason.
arm-toolchain:
	command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends gcc-arm-none-eabi qemu-system-arm >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check fusion cli tests benchmarks
	$(BIN)/ruff format --check fusion cli tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy fusion cli benchmarks

test: $(STAMP) lint typecheck
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/data_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
