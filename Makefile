# Docket -- plain Makefile. `make run` starts docketd; `make test` runs every test;
# `make bench` compares docketd with beanstalkd and redis-server (bench/run.sh).
# Dependencies are Debian packages found with pkg-config; scripts/deps.sh installs
# the missing ones when run as root and otherwise prints the apt-get line.

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
SAN     ?=
PKGS    := libevent inih
CFLAGS_BASE := -std=c11 -Wall -Wextra -Werror -Wformat=2 -Wshadow -g -D_GNU_SOURCE \
               -MMD -MP
ifeq ($(SAN),1)
  OPT := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
else
  OPT := -O2
endif
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CRIT_CFLAGS = $(shell pkg-config --cflags criterion 2>/dev/null)
CRIT_LIBS   = $(shell pkg-config --libs criterion 2>/dev/null)
CFLAGS  += $(CFLAGS_BASE) $(OPT)
LDFLAGS += $(OPT) -pthread

CORE_SRC   := $(wildcard src/common/*.c src/engine/*.c src/proto/*.c src/store/*.c)
SERVER_SRC := $(wildcard src/server/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
BENCH_SRC  := $(wildcard bench/*.c)
CORE_OBJ   := $(CORE_SRC:%.c=$(BUILD)/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_OBJ  := $(BENCH_SRC:%.c=$(BUILD)/%.o)

DOCKETD := $(BUILD)/docketd
BENCH   := $(BUILD)/docket-bench
PORT    ?= 11300
LISTEN  ?= 127.0.0.1

.PHONY: all run test unit asan bench install clean format deps check-deps
all: $(DOCKETD) $(BENCH)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/core.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(DOCKETD): $(SERVER_OBJ) $(BUILD)/core.a
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# The load generator: libc and pthreads only, so it builds wherever docketd does.
$(BENCH): $(BENCH_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/core.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CRIT_CFLAGS) -o $@ $< $(BUILD)/core.a $(CRIT_LIBS) $(LDFLAGS)

unit: $(UNIT_BIN)

deps:
	@sh scripts/deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	./$(DOCKETD) -l $(LISTEN) -p $(PORT)

# Every test: unit tests (plain and ASan+UBSan), integration tests against the
# real binary (plain and ASan+UBSan), beanstalkd differential tests, npm clients.
test: deps
	@$(MAKE) --no-print-directory all unit
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 all unit
	@sh tests/run.sh

# docket-bench against docketd (fsync always, 50 ms, never, --memory), beanstalkd
# (in memory, -f 0, -f 1000) and redis-server (no persistence, appendfsync always,
# everysec), each started fresh on 127.0.0.1, plus RSS per queued job with a
# million jobs (BENCH_CASES=mem). Takes 6-9 minutes; BENCH_QUICK=1
# for a one-minute smoke run. Not part of `make test`. See docs/benchmarks.md.
bench: deps
	@$(MAKE) --no-print-directory all
	@sh bench/run.sh

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 all unit

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(DOCKETD) $(DESTDIR)$(PREFIX)/bin/docketd

format:
	clang-format -i $(wildcard src/*/*.c src/*/*.h tests/unit/*.c bench/*.c bench/*.h)

clean:
	rm -rf build build-asan

-include $(CORE_OBJ:.o=.d) $(SERVER_OBJ:.o=.d) $(BENCH_OBJ:.o=.d)
