# Two set-up commands for a fresh machine: `make book` (the main job) and `make test`.
# Each installs what it needs into .venv (from pyproject.toml) before it runs.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= data/synthetic
PLANTS ?= 600
WIDTH  ?= 128
SEED   ?= 0
RUNS   ?= runs
export RICE_LAB_DATA := $(abspath $(DATA))
export RICE_LAB_RUNS := $(abspath $(RUNS))
export MPLBACKEND := Agg

.PHONY: install constraints data pipeline classifiers explained book test test-slow exercises experiments bump views bench clean FORCE

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[course,dev]'
	touch $@

# constraints.txt anew: the newest versions pyproject.toml's ranges allow, resolved in a scratch
# environment made (and removed) here; run make test on them before committing the file.
constraints:
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found"; exit 1; }
	scratch=$$(mktemp -d) && $(PYTHON) -m venv $$scratch/venv \
	&& $$scratch/venv/bin/python -m pip install --quiet '.[course,dev]' \
	&& { sed -n '1,2p' constraints.txt; $$scratch/venv/bin/python -m pip freeze --exclude-editable | grep -v '^rice-lab'; } \
	   > constraints.txt.new && mv constraints.txt.new constraints.txt && rm -rf $$scratch \
	&& echo "constraints: constraints.txt rewritten; git diff constraints.txt shows what moved"

# The embedded datasets (the default and its same-lesion-colours variant): regenerated only when the
# generator or its settings change.
data: $(DATA)/.complete

# The generator's settings, rewritten only when they change, so that editing the Makefile for another
# reason does not regenerate the data (and wipe the book's execution cache with it).
DATA_SETTINGS := $(DATA).settings
$(DATA_SETTINGS): FORCE
	@mkdir -p $(dir $@); echo "plants=$(PLANTS) width=$(WIDTH) seed=$(SEED)" | cmp -s - $@ \
		|| echo "plants=$(PLANTS) width=$(WIDTH) seed=$(SEED)" > $@
FORCE:

$(DATA)/.complete: $(wildcard rice_lab/data/synthetic/*.py) rice_lab/data/zindi.py $(DATA_SETTINGS) | $(STAMP)
	$(BIN)/rice-lab data synth $(DATA) --plants $(PLANTS) --width $(WIDTH) --seed $(SEED)
	$(BIN)/rice-lab data synth $(DATA)-same-lesion-colours --plants $(PLANTS) --width $(WIDTH) --seed $(SEED) \
		--same-lesion-colours  # the data chapter's variant: lesions of one colour recipe
	$(BIN)/rice-lab data validate $(DATA)
	rm -rf book/_build/.jupyter_cache  # pages computed on the old data must run again
	touch $@

# The runs the book reads: a finished run that matches its preset and data is reused, an interrupted
# one resumes, a stale one is trained again (rice-lab pretrain --if-needed decides).
# A new encoder invalidates the cached pages that read it (book/uncache.py), not the data chapter.
pipeline: data
	@run=$(RUNS)/cpu-tiny-paired; before=$$(cksum 2>/dev/null < $$run/encoder.pt); \
	$(BIN)/rice-lab pretrain $(DATA) --preset cpu-tiny --views paired --out $$run --if-needed --no-progress \
	&& if [ "$$before" != "$$(cksum < $$run/encoder.pt)" ]; then $(BIN)/python book/uncache.py ssl.md finetune.md explain.md dynamics.md; fi

# The classifiers the fine-tuning chapter reads: the default (SwAV, full), a random start and a probe.
classifiers: pipeline
	@for spec in "cpu-tiny-classifier --encoder $(RUNS)/cpu-tiny-paired --mode full" \
	              "cpu-tiny-classifier-random --encoder random --mode full" \
	              "cpu-tiny-classifier-probe --encoder $(RUNS)/cpu-tiny-paired --mode probe" \
	              "cpu-tiny-classifier-shuffled --encoder $(RUNS)/cpu-tiny-paired --mode full --shuffled-labels"; do \
	  set -- $$spec; run=$(RUNS)/$$1; shift; before=$$(cksum 2>/dev/null < $$run/classifier.pt); \
	  $(BIN)/rice-lab finetune $(DATA) --preset cpu-tiny --out $$run --if-needed --no-progress "$$@" || exit 1; \
	  if [ "$$before" != "$$(cksum < $$run/classifier.pt)" ]; then $(BIN)/python book/uncache.py finetune.md explain.md dynamics.md; fi; \
	done

# The explaining chapter's report on the default classifier (kept while its settings, data and
# classifiers are unchanged: rice-lab explain --if-needed decides).
explained: classifiers
	@out=$(RUNS)/cpu-tiny-classifier-explain; before=$$(cksum 2>/dev/null < $$out/table.csv); \
	$(BIN)/rice-lab explain $(RUNS)/cpu-tiny-classifier $(DATA) --out $$out --images 12 --concepts \
		--shuffled $(RUNS)/cpu-tiny-classifier-shuffled --if-needed --no-progress \
	&& if [ "$$before" != "$$(cksum < $$out/table.csv)" ]; then $(BIN)/python book/uncache.py explain.md; fi

# The fine-tuning chapter's experiments: too long for the book's build (hours on 2 CPU cores), so they
# run here, and their tables are copied into book/measured/ (committed) for the chapter to show, with
# this command named beside them. Every run is cached under $(RUNS)/experiments: rerunning continues.
EXPERIMENTS := $(RUNS)/experiments
EXP_THREADS ?= 1
experiments: classifiers
	$(BIN)/rice-lab pretrain $(DATA) --preset cpu-tiny --views rgb --out $(RUNS)/cpu-tiny-rgb --if-needed --no-progress
	$(BIN)/rice-lab pretrain $(DATA) --preset cpu-tiny --views rgnir --out $(RUNS)/cpu-tiny-rgnir --if-needed --no-progress
	$(BIN)/rice-lab experiment leakage $(DATA) --out $(EXPERIMENTS)/leakage --seeds 3 --threads $(EXP_THREADS) \
		--encoder swav=$(RUNS)/cpu-tiny-paired
	$(BIN)/rice-lab experiment sensors $(DATA) --out $(EXPERIMENTS)/sensors --seeds 3 --threads $(EXP_THREADS) \
		--encoder paired=$(RUNS)/cpu-tiny-paired --encoder rgb=$(RUNS)/cpu-tiny-rgb --encoder rgnir=$(RUNS)/cpu-tiny-rgnir
	$(BIN)/rice-lab experiment self-distillation $(DATA) --out $(EXPERIMENTS)/self-distillation --seeds 3 \
		--threads $(EXP_THREADS) --encoder swav=$(RUNS)/cpu-tiny-paired
	$(BIN)/rice-lab experiment label-efficiency $(DATA) --out $(EXPERIMENTS)/label-efficiency --seeds 5 \
		--modes discriminative --threads $(EXP_THREADS) --encoder swav=$(RUNS)/cpu-tiny-paired --encoder random=random
	for name in leakage sensors self-distillation label-efficiency; do \
	  mkdir -p book/measured/$$name && cp $(EXPERIMENTS)/$$name/*.csv $(EXPERIMENTS)/$$name/*.json book/measured/$$name/ || exit 1; \
	done

# The dynamics chapter's bump experiment (15-26 minutes per pre-training run on one busy core): the lead
# configuration over five seeds, then the queue moved (from half-way, never) for seeds 0 and 1, the two that left the plateau;
# and the progress measures of seed 0, the seed with the clearest second descent. Tables copied into book/measured/ as above.
BUMP := $(EXPERIMENTS)/bump
bump: data
	$(BIN)/rice-lab experiment bump $(DATA) --out $(BUMP) --seeds 5 --arms queue-half
	mkdir -p book/measured/bump-seeds && cp $(BUMP)/bump*.csv book/measured/bump-seeds/
	$(BIN)/rice-lab experiment bump $(DATA) --out $(BUMP) --seeds 2 --arms queue-half queue-never
	mkdir -p book/measured/bump-queue && cp $(BUMP)/bump*.csv book/measured/bump-queue/
	$(BIN)/rice-lab dynamics $(BUMP)/runs/queue-half-s0 --out $(BUMP)/dynamics-s0 --threads 1 --no-progress
	mkdir -p book/measured/bump-dynamics && cp $(BUMP)/dynamics-s0/*.csv book/measured/bump-dynamics/

# The SSL chapter's views experiment (about 13 minutes per pre-training run on one core): one seed of
# each arm, tables copied into book/measured/views/ as above.
VIEWS_EXP := $(EXPERIMENTS)/views
views: data
	$(BIN)/rice-lab experiment views $(DATA) --out $(VIEWS_EXP) --seeds 1 --threads $(EXP_THREADS) \
		--arms today swap leaf-centred rgb rgb+swap
	mkdir -p book/measured/views && cp $(VIEWS_EXP)/views*.csv book/measured/views/

book: explained
	$(BIN)/jupyter-book build book -W --keep-going
	$(BIN)/python book/check_figures.py
	@echo "book: open book/_build/html/index.html"

# Two processes, one test file each at a time (module fixtures are built once); the tests marked slow
# (minutes each) run apart, in `make test-slow`, which CI runs too.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not slow"

# The claims the book makes, re-checked end to end on fresh full-size data, and the whole grading matrix:
# every hazard of the hostile cohort and nbgrader's totals on every assignment.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -m slow

exercises: $(STAMP)
	$(BIN)/python -m autograder generate

bench: data
	for script in benchmarks/bench_*.py benchmarks/data_baselines.py; do $(BIN)/python $$script || exit 1; done

# Only the built book: datasets and runs are work a person may want to keep, so they are never removed
# by make (delete $(DATA), $(DATA)-same-lesion-colours or $(RUNS) by hand if you mean to).
clean:
	rm -rf book/_build
	@echo "clean: removed book/_build; kept $(DATA), $(DATA)-same-lesion-colours and $(RUNS)"
