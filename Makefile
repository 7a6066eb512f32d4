# lcn_mm developer targets. `make demo` and `make test` are all you need; both create .venv first.
#
#   make env                  create/update .venv (torch 2.13 CPU, mmcv 2.1.0 + ops, mmdet, mmseg)
#   make test [PYTEST_ARGS=]  run the test suite, e.g. make test PYTEST_ARGS="-x -k stack"
#   make demo                 train+evaluate LCN on 3 aerial tasks on CPU (<= 15 min), table + plot
#   make clean-env            delete .venv
#
# LCN_WHEELHOUSE=/path/to/wheels  optional wheel cache (prebuilt mmcv); see README.md.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
PYTEST_ARGS ?=
DEMO_ARGS ?=

# Everything that decides the content of the venv. The stamp file name carries a hash of their
# content, so the env is rebuilt when (and only when) one of them changes or .venv disappears.
ENV_INPUTS := requirements.txt $(sort $(wildcard requirements/*.txt)) setup.py tools/setup_env.sh
ENV_HASH := $(shell cat $(ENV_INPUTS) | sha256sum | cut -c1-16)
ENV_STAMP := $(VENV)/.stamp-$(ENV_HASH)

.PHONY: env test demo clean-env

env: $(ENV_STAMP)

$(ENV_STAMP): $(ENV_INPUTS)
	PYTHON=$(PYTHON) VENV=$(abspath $(VENV)) bash tools/setup_env.sh $@

test: env
	$(VPY) -m pytest tests/ projects/aerial_demo/tests/ $(PYTEST_ARGS)

demo: env
	$(VPY) projects/aerial_demo/tools/demo.py $(DEMO_ARGS)

clean-env:
	rm -rf $(VENV)
