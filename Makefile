# Docket -- plain Makefile. `make run` starts docketd; `make test` runs every test.
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
CORE_OBJ   := $(CORE_SRC:%.c=$(BUILD)/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

DOCKETD := $(BUILD)/docketd
PORT    ?= 11300
LISTEN  ?= 127.0.0.1

.PHONY: all run test unit asan install clean format deps check-deps
all: $(DOCKETD)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/core.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(DOCKETD): $(SERVER_OBJ) $(BUILD)/core.a
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

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

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 all unit

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(DOCKETD) $(DESTDIR)$(PREFIX)/bin/docketd

format:
	clang-format -i $(wildcard src/*/*.c src/*/*.h tests/unit/*.c)

clean:
	rm -rf build build-asan

-include $(CORE_OBJ:.o=.d) $(SERVER_OBJ:.o=.d)
