# moesim: discrete-event simulator for Mixture-of-Experts serving.
#
#   make demo        install missing packages, build, run configs/demo.ini
#   make test        install missing packages, build, run the Criterion suite
#   make SAN=1 test  the same under AddressSanitizer + UBSan (build-san/)
#   make bench       benchmarks (engine, placement, trace reading, serving)
#   make fuzz        each reader (traces, config, request CSV) under libFuzzer for FUZZ_SECONDS
#   make coverage    the suite built with gcov (build-cov/), then line coverage
#                    of sim/base/ sim/ models/ traces/ analysis/ per file and in total
#
# Sources are found by wildcard: a new module is a new .c file in its room
# (sim/base/ sim/ models/ traces/ analysis/), a new test a tests/test_*.c file, a new
# benchmark a tests/bench_*.c file. Nothing here needs editing for that.

PKGS      := gsl sqlite3 inih jansson
CC        ?= cc
CSTD      := -std=c11 -D_POSIX_C_SOURCE=200809L
WARN      := -Wall -Wextra -Werror
OPT       ?= -O2 -g
# Layers (README, "Layers: who may include whom"): each room compiles with
# the include paths of its own layer and those below it, so an include that
# points back up does not compile. sim/base (errors, allocation, files, INI,
# the event engine) sees only itself; models/ and traces/ see base and each
# other; sim/ and analysis/ see everything, and tests/test_layers.c checks
# their finer order (engine, results, specs, loops, CLI).
BASE_INCS  := -Isim/base
MODEL_INCS := $(BASE_INCS) -Imodels -Itraces
INCS      := $(MODEL_INCS) -Isim -Ianalysis

ifeq ($(SAN),1)
BUILD     := build-san
OPT       := -O1 -g -fno-omit-frame-pointer
SANFLAGS  := -fsanitize=address,undefined -fno-sanitize-recover=undefined
else
BUILD     := build
SANFLAGS  :=
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS    += $(CSTD) $(OPT) $(WARN) $(SANFLAGS) $(INCS) $(PKG_CFLAGS) -MMD -MP
LDFLAGS   += $(SANFLAGS)
LDLIBS    += $(PKG_LIBS) -lm

# Open MPI, when mpicc is installed (MPI=0 turns it off; make clean after
# switching): sim/sweep_mpi.c is then built with -DMOESIM_MPI, so sweeps
# spread over mpirun ranks, and everything links libmpi. Without it that
# file is a serial stand-in.
MPI       ?= $(if $(shell command -v mpicc 2>/dev/null),1,0)
ifeq ($(MPI),1)
$(BUILD)/obj/sim/sweep_mpi.o: CFLAGS += -DMOESIM_MPI -pthread $(shell mpicc --showme:compile)
LDLIBS    += -pthread $(shell mpicc --showme:link)
endif

LIB_SRC   := $(filter-out sim/main.c,$(wildcard sim/base/*.c sim/*.c models/*.c traces/*.c analysis/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TEST_SRC  := $(wildcard tests/test_*.c)
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
BENCH_SRC := $(wildcard tests/bench_*.c)
BENCH_BIN := $(BENCH_SRC:tests/%.c=$(BUILD)/%)
FUZZ_SRC  := $(wildcard tests/fuzz_*.c)

MOESIM    := $(BUILD)/moesim
FUZZ_SECONDS ?= 60

.PHONY: all deps demo test bench fuzz clean coverage config-doc
all: $(MOESIM)

deps:
	@sh .ci/deps

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/sim/base/%.o: INCS := $(BASE_INCS)
$(BUILD)/obj/models/%.o $(BUILD)/obj/traces/%.o: INCS := $(MODEL_INCS)

$(BUILD)/libmoesim.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# `moesim --version` names the commit it was built from: git describe,
# captured at build time into $(BUILD)/version.h (rewritten only when it
# changes, so main.o is rebuilt exactly then); 'unknown' outside git.
GIT_DESCRIBE := $(shell git describe --always --dirty 2>/dev/null | tr -cd '[:alnum:]._+-' || true)
$(BUILD)/version.h: FORCE
	@mkdir -p $(BUILD)
	@printf '#define MOESIM_GIT "%s"\n' '$(or $(GIT_DESCRIBE),unknown)' >$@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi
$(BUILD)/obj/sim/main.o: $(BUILD)/version.h
$(BUILD)/obj/sim/main.o: CFLAGS += -I$(BUILD)
.PHONY: FORCE
FORCE:

$(MOESIM): $(BUILD)/obj/sim/main.o $(BUILD)/libmoesim.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/test_moesim: $(TEST_OBJ) $(BUILD)/libmoesim.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) $(shell pkg-config --libs criterion) -o $@

$(BUILD)/bench_%: $(BUILD)/obj/tests/bench_%.o $(BUILD)/libmoesim.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# The demo: every strategy of configs/demo.ini on the same DeepSeek-V3
# trace, results in results/demo.db, figures and an index in report/.
demo: deps
	$(MAKE) $(MOESIM)
	@mkdir -p results
	$(MOESIM) compare configs/demo.ini --db results/demo.db --replace
	$(MOESIM) report results/demo.db -o report
	@echo "moesim: results in results/demo.db, figures in report/ (open report/index.md)"

# docs/config.md's key reference, regenerated from the key table the
# parsers check against (sim/base/cfg_keys.c); tests/test_cfg_keys.c fails
# while the two differ.
config-doc: $(MOESIM)
	$(MOESIM) config-keys --update docs/config.md

# Tests run from the repository root (they read traces/ and configs/).
# Criterion runs each test in a child whose sanitizer reports do not change
# the runner's exit status, so the SAN build also fails on any report in the
# log (leaks included).
test: deps
	$(MAKE) $(BUILD)/test_moesim $(MOESIM)
ifeq ($(SAN),1)
	@$(BUILD)/test_moesim --jobs 2 >$(BUILD)/test.log 2>&1; rc=$$?; cat $(BUILD)/test.log; \
	  [ $$rc -eq 0 ] || exit $$rc; \
	  if grep -qE "ERROR: (Leak|Address)Sanitizer|runtime error:" $(BUILD)/test.log; then \
	    echo "moesim: sanitizer reports in the test log (see above)"; exit 1; fi
else
	$(BUILD)/test_moesim --jobs 2
endif

bench: deps
	$(MAKE) $(BENCH_BIN) $(MOESIM)
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b || exit 1; done

# libFuzzer needs clang; each reader has a tests/fuzz_<reader>.c target and a
# seed corpus in tests/corpus/<reader>/.
FUZZ_BIN := $(FUZZ_SRC:tests/%.c=build-fuzz/%)
FUZZ_CFLAGS := $(CSTD) -O1 -g -fsanitize=fuzzer,address,undefined $(INCS) $(PKG_CFLAGS)
FUZZ_LIB_SRC := $(LIB_SRC)
build-fuzz/%: tests/%.c $(FUZZ_LIB_SRC)
	@mkdir -p build-fuzz
	clang $(FUZZ_CFLAGS) $< $(FUZZ_LIB_SRC) $(PKG_LIBS) -lm -o $@

fuzz: deps
	$(MAKE) $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); mkdir -p build-fuzz/corpus-$$n; \
	  echo "== $$n ($(FUZZ_SECONDS) s)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 build-fuzz/corpus-$$n tests/corpus/$${n#fuzz_} >build-fuzz/$$n.log 2>&1 \
	    || { tail -40 build-fuzz/$$n.log; exit 1; }; tail -1 build-fuzz/$$n.log; done

# Line coverage of the library by the test suite: gcov counts, summed by
# awk from gcov's own "Lines executed" lines (no other tool needed).
coverage: deps
	@rm -f build-cov/obj/*/*.gcda build-cov/obj/*/*/*.gcda
	$(MAKE) BUILD=build-cov OPT="-O0 -g --coverage" LDFLAGS=--coverage \
	  build-cov/test_moesim build-cov/moesim
	build-cov/test_moesim --jobs 2 >build-cov/test.log 2>&1 || { tail -20 build-cov/test.log; exit 1; }
	@for d in sim/base sim models traces analysis; do \
	  gcov -n -o build-cov/obj/$$d $$(ls $$d/*.c | grep -v '^sim/main\.c$$') 2>/dev/null; \
	done | awk '/^File /{f=$$2; gsub("\047","",f)} /^Lines executed:/{split($$2,a,":"); \
	  p=a[2]+0; n=$$4; if (f ~ /\.c$$/ && !seen[f]++) {hit+=p*n/100; tot+=n; \
	  printf "%-34s %6.1f%% of %5d lines\n", f, p, n}} \
	  END {printf "moesim: line coverage %.1f%% (%d of %d lines)\n", 100*hit/tot, hit, tot}'

clean:
	rm -rf build build-san build-fuzz build-cov

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BUILD)/obj/sim/main.d
