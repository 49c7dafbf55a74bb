# Every target sets up what it needs: a fresh machine needs only Python 3.10+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
STOCKFISH_BIN := $(shell command -v stockfish 2>/dev/null || ls /usr/games/stockfish 2>/dev/null)
# A model file, or a bundled model's name (a models/*.onnx stem): MODEL=paper.
MODEL ?= default
OUT ?= out

PLAY_ARGS ?=

.PHONY: help install stockfish browser test lint run play screenshots bench evaluate \
  frontier-quick frontier-full frontier-board-input \
  experiment-tiny experiment-cpu clean gpu-carry gpu-rehearsal gpu-run

help:
	@echo "make run    play MODEL (default: the bundled default) against Stockfish levels: a rating list, read against its card"
	@echo "make play   play MODEL in the browser (PLAY_ARGS='--port 8800 ...')"
	@echo "make test   set everything up and run the test suite"
	@echo "make bench  run the speed benchmarks (figures in docs/benchmarks.md)"
	@echo "make evaluate   the model card's figures for MODEL"
	@echo "make experiment-tiny / experiment-cpu   the whole study in one command"
	@echo "make frontier-quick / frontier-full   where the model transcends, against compute"
	@echo "make frontier-board-input   the board as an input: three arms, rating against training time"
	@echo "make gpu-carry / gpu-rehearsal / gpu-run   a prepared GPU window (docs/gpu-run.md)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[train,dev]'
	touch $(STAMP)

install: $(STAMP)

stockfish:
	@if [ -z "$(STOCKFISH_BIN)" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    echo "installing Stockfish from Debian"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stockfish >/dev/null; \
	  else \
	    echo "Stockfish is needed: run 'sudo apt-get install stockfish' (or set STOCKFISH=/path)"; exit 1; \
	  fi; \
	fi

# The page's browser test needs chromium and its driver; without them it is skipped.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium and chromium-driver from Debian"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium chromium-driver >/dev/null; \
	  else \
	    echo "no chromium: the browser test will be skipped (apt-get install chromium chromium-driver)"; \
	  fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) stockfish browser
	$(BIN)/ruff check .
	$(BIN)/pytest -q

# One PGN a model: a rerun resumes its own games, never another model's.
run: $(STAMP) stockfish
	$(BIN)/transcend tournament --engine "transcend-uci --temp 0.01 --model $(MODEL)" \
	  --opponent "sf:skill=0,nodes=100" --opponent "sf:skill=1,nodes=100" --opponent random \
	  --games 6 --max-moves 90 --concurrency 2 --pgn $(OUT)/run-$(basename $(notdir $(MODEL))).pgn \
	  --anchor random=0 --card $(MODEL)

# Stockfish is optional here: without it the page has no win probabilities.
play: $(STAMP)
	@$(MAKE) --no-print-directory stockfish || echo "continuing without Stockfish"
	$(BIN)/transcend play --model $(MODEL) $(PLAY_ARGS)

screenshots: $(STAMP) stockfish browser
	$(BIN)/python tests/play_screenshots.py

bench: $(STAMP) stockfish
	$(BIN)/python benchmarks/bench_prepare.py
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_convert.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_board.py
	$(BIN)/python benchmarks/bench_advantage.py
	$(BIN)/python benchmarks/bench_tournament.py
	$(BIN)/python benchmarks/bench_familiarity.py
	$(BIN)/python benchmarks/verify_wheels.py  # the platform wheel table against PyPI (network)
	$(BIN)/python benchmarks/bench_play.py

# The figures of the model card (models/README.md): held-out expert games, the per-move
# advantage analysis, and one rating list of the model at three temperatures, its four training
# experts, Stockfish levels 0-3 at 100 nodes and a random mover. Every entry gets at least 200
# games: 23 per temperature and opponent, and 17 a pair among the opponents.
EXPERTS := --expert sf:skill=0,nodes=100,eps=0.4 --expert sf:skill=1,nodes=100,eps=0.4 \
  --expert sf:skill=2,nodes=100,eps=0.4 --expert sf:skill=3,nodes=100,eps=0.4
LEVELS := --opponent sf:skill=0,nodes=100 --opponent sf:skill=1,nodes=100 \
  --opponent sf:skill=2,nodes=100 --opponent sf:skill=3,nodes=100
SWEEP_TEMPS ?= 0.001,0.01,0.1,0.3,0.5,0.75,1,1.5
SWEEP_GAMES ?= 23
SWEEP_MODE ?= token
OPPONENT_GAMES ?= 17

evaluate: $(STAMP) stockfish
	$(BIN)/transcend data experts --out $(OUT)/heldout.pgn --games 400 --seed 2 --quiet
	$(BIN)/transcend advantage --model $(MODEL) --pgn $(OUT)/heldout.pgn --positions 500 \
	  --temps 0,0.01,0.1,0.3,0.5,1 --out $(OUT)/advantage --quiet
	$(BIN)/transcend sweep --model $(MODEL) --temps $(SWEEP_TEMPS) --mode $(SWEEP_MODE) \
	  $(EXPERTS) $(LEVELS) \
	  --opponent random --anchor random=0 --games $(SWEEP_GAMES) \
	  --opponent-games $(OPPONENT_GAMES) --concurrency 2 --out $(OUT)/sweep --quiet \
	  --no-calibration

# Where the model transcends, by familiarity, and how training compute moves it
# (docs/frontier.md). Resumable; quick: about 6 minutes on 2 cores; full: hours.
frontier-quick: $(STAMP) stockfish
	$(BIN)/transcend frontier --preset quick --out $(OUT)/frontier-quick

frontier-full: $(STAMP) stockfish
	$(BIN)/transcend frontier --preset full --out $(OUT)/frontier-full --extra eps0.4=$(MODEL)

# The board as an input (docs/board.md): plain, board and board+attacks on 100,000 expert games,
# every snapshot in games, rating against training time. Resumable; hours on 2 cores.
frontier-board-input: $(STAMP) stockfish
	$(BIN)/transcend frontier --preset board-input --out $(OUT)/frontier-board-input \
	  --extra eps0.4=$(MODEL)

experiment-tiny: $(STAMP) stockfish
	$(BIN)/transcend experiment --preset tiny --out $(OUT)/experiment-tiny

experiment-cpu: $(STAMP) stockfish
	$(BIN)/transcend experiment --preset cpu --out $(OUT)/experiment-cpu

# A GPU window (docs/gpu-run.md): the inputs are packed here into $(CARRY), rehearsed here on the
# CPU, and run on the lent machine with its own python3 and torch.
CARRY ?= gpu-carry
GPU_DATA ?= data/gpu
GPU_HELDOUT ?= $(OUT)/heldout.pgn
GPU_OUT ?= $(OUT)/gpu-run
GPU_BUDGET ?= 540
# A board input for the model (board or board+attacks; see transcend train --board-input).
GPU_BOARD_INPUT ?=
GPU_BOARD_ARGS := $(if $(GPU_BOARD_INPUT),--board-input $(GPU_BOARD_INPUT))

gpu-carry: $(STAMP) stockfish
	$(BIN)/transcend gpu-pack --data $(GPU_DATA) --heldout $(GPU_HELDOUT) --out $(CARRY)

gpu-rehearsal: $(STAMP) stockfish
	$(BIN)/transcend gpu-run --carry $(CARRY) --out $(OUT)/gpu-rehearsal --dry-run $(GPU_BOARD_ARGS)

# On the GPU machine only: no venv, no pinned CPU torch, nothing built. The carried wheels go
# to /tmp/site and the repository is linked in beside them as `transcend` (pyproject.toml maps
# transcend.X to the folder X), so the image's setuptools, whatever its version, is never used.
gpu-run:
	python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $(CARRY)/wheels/*.whl
	ln -sfn "$(CURDIR)" /tmp/site/transcend
	PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 -m transcend.training.cli gpu-run \
	  --carry $(CARRY) --out $(GPU_OUT) --budget $(GPU_BUDGET) $(GPU_BOARD_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
