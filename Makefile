# pkgstore: one non-recursive GNU Makefile.
#
#   make            build the library, the tools, the server and the agent
#   make deps       install missing Debian packages (apt-get, as root or via sudo)
#   make test       deps, then build and run every test (cmocka, fuzz corpus replay, TAP via prove)
#   make asan       deps, then the same under -fsanitize=address,undefined with -Werror
#   make demo       narrated walk-through on a temporary store
#   make run        start pkgstored on the default store
#   make bench      run the benchmarks under bench/
#   make fuzz       build the libFuzzer harnesses (clang); make fuzz-smoke runs each 60 s
#   make long-tests 10,000-kill crash test and an hour of each fuzz harness (see below)
#   make install    install library, headers, pkgstore.pc, programs, man pages and ui/
#
# Sources are discovered by convention so that adding a module, a tool or a
# test needs no edit here:
#   libpkgstore/*.c            -> libpkgstore.so.$(SOMAJOR) and libpkgstore.a
#   tools/pkgstore*.c          -> one program each; other tools/*.c are shared CLI helpers
#   server/*.c, server/*/*.c    -> pkgstored (http/, api/, fleet/: docs/architecture.md)
#   ui/*                       -> compiled into pkgstored (the web console, at /ui/)
#   common/*.c                 -> linked into pkgstored and the tools (token files)
#   agent/*.c                  -> pkgstore-agent
#   tests/test_*.c             -> one cmocka binary each, linked with tests/helpers/*.c
#   fuzz/fuzz_*.c              -> replayed over fuzz/corpus/<target>/ by make test

SHELL := /bin/bash
.DEFAULT_GOAL := all

VERSION  := 0.1.0
# The headers carry it too (PKGSTORE_VERSION_MAJOR/MINOR/PATCH in
# include/pkgstore/common.h, for programs at compile time): they must agree.
version_part = $(shell sed -n 's/^\#define PKGSTORE_VERSION_$(1) \([0-9]*\)$$/\1/p' include/pkgstore/common.h)
HEADER_VERSION := $(call version_part,MAJOR).$(call version_part,MINOR).$(call version_part,PATCH)
ifneq ($(VERSION),$(HEADER_VERSION))
$(error VERSION $(VERSION) in the Makefile is not $(HEADER_VERSION) of include/pkgstore/common.h)
endif
SOMAJOR  := 0
PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR   := $(PREFIX)/bin
LIBDIR   := $(PREFIX)/lib
INCDIR   := $(PREFIX)/include
MANDIR   := $(PREFIX)/share/man
# pkgstore-agent finds its worker here, relative to its own bin/ directory.
LIBEXECDIR := $(PREFIX)/libexec/pkgstore
PCDIR    := $(LIBDIR)/pkgconfig
# the web console's files (ui/; pkgstored also has them compiled in)
UIDIR    := $(PREFIX)/share/pkgstore/ui

BUILD    ?= build
CC       ?= cc
CFLAGS   ?= -O2 -g
WARNINGS := -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wformat=2 -Wvla -Wimplicit-fallthrough
# Extra flags for special builds (asan sets -Werror and the sanitizers here).
XCFLAGS  ?=
XLDFLAGS ?=

PKGCONF  ?= pkg-config
LIB_PKGS    := libcrypto lmdb libzstd libarchive jansson
# gnutls: pkgstored hands its certificate to libmicrohttpd, which Debian
# builds over GnuTLS, through a GnuTLS callback (server/tls.c).
SERVER_PKGS := libmicrohttpd libcrypto gnutls
AGENT_PKGS  := libcurl yaml-0.1
TOOL_PKGS   := libcurl
TEST_PKGS   := cmocka

pc_cflags = $(shell $(PKGCONF) --cflags $(1) 2>/dev/null)
pc_libs   = $(shell $(PKGCONF) --libs $(1) 2>/dev/null)
# lmdb ships no .pc file on Debian 12; fall back to the plain library name.
LMDB_LIBS := $(or $(call pc_libs,lmdb),-llmdb)
LIB_LIBS  := $(call pc_libs,libcrypto libzstd libarchive jansson) $(LMDB_LIBS) -lpthread

# Programs see only the public headers (include/); the library, its unit
# tests, fuzz harnesses and benchmark drivers also see its private ones.
# $(CPPFLAGS) last: a distribution's hardening flags (dpkg-buildflags'
# -D_FORTIFY_SOURCE=2 ...) apply to every object.
CPPFLAGS_PUB := -Iinclude -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 $(CPPFLAGS)
CPPFLAGS_ALL := $(CPPFLAGS_PUB) -Ilibpkgstore
CFLAGS_ALL   := $(WARNINGS) $(CFLAGS) $(XCFLAGS)

# ---------------------------------------------------------------- sources
LIB_SRCS    := $(sort $(wildcard libpkgstore/*.c))
LIB_OBJS    := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
TOOL_MAINS  := $(sort $(wildcard tools/pkgstore*.c))
TOOL_HELP   := $(filter-out $(TOOL_MAINS),$(sort $(wildcard tools/*.c)))
TOOL_HOBJS  := $(TOOL_HELP:%.c=$(BUILD)/obj/%.o)
TOOLS       := $(TOOL_MAINS:tools/%.c=$(BUILD)/bin/%)
SERVER_SRCS := $(sort $(wildcard server/*.c server/*/*.c))
# Program-side code shared by pkgstored and the tools (token files).
COMMON_SRCS := $(sort $(wildcard common/*.c))
COMMON_OBJS := $(COMMON_SRCS:%.c=$(BUILD)/obj/%.o)
AGENT_SRCS  := $(sort $(wildcard agent/*.c))
# The agent's worker: its own main plus the agent's small helpers (util.c).
HELPER_SRCS := $(sort $(wildcard agent/helper/*.c)) agent/util.c
TEST_SRCS   := $(sort $(wildcard tests/test_*.c))
TEST_HSRCS  := $(sort $(wildcard tests/helpers/*.c))
TESTS       := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
FUZZ_SRCS   := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_REPLAY := $(FUZZ_SRCS:fuzz/%.c=$(BUILD)/fuzz/replay_%)
BENCH_SRCS  := $(sort $(wildcard bench/*.c))
BENCH_BINS  := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)
EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
EXAMPLES    := $(EXAMPLE_SRCS:examples/%.c=$(BUILD)/bin/example-%)

SHLIB_NAME  := libpkgstore.so
SHLIB       := $(BUILD)/lib/$(SHLIB_NAME).$(VERSION)
SHLIB_SONAME := $(SHLIB_NAME).$(SOMAJOR)
STLIB       := $(BUILD)/lib/libpkgstore.a

PROGRAMS := $(TOOLS) $(EXAMPLES)
ifneq ($(SERVER_SRCS),)
PROGRAMS += $(BUILD)/bin/pkgstored
endif
ifneq ($(AGENT_SRCS),)
PROGRAMS += $(BUILD)/bin/pkgstore-agent $(BUILD)/bin/pkgstore-agent-helper
endif

# Programs link the shared library, so only exported symbols are reachable.
RPATH_LDFLAGS := -Wl,-rpath,'$$ORIGIN/../lib'
PROG_LDLIBS   := -L$(BUILD)/lib -lpkgstore

.PHONY: all lib tools programs
all: lib programs $(BUILD)/pkgstore.pc $(BENCH_BINS)
lib: $(SHLIB) $(STLIB)
programs: $(PROGRAMS)
tools: $(TOOLS)

# ---------------------------------------------------------------- preflight
# Before the first object: every library the build needs must be found, else
# one line that says what to do instead of hundreds of undefined references.
# (A recipe, not a parse-time check: `make test` installs them first.)
PREFLIGHT_PKGS := $(sort libcrypto libzstd libarchive jansson libmicrohttpd gnutls libcurl yaml-0.1 cmocka libprotobuf-c zlib)
.PHONY: preflight
preflight:
	@missing=; for p in $(PREFLIGHT_PKGS); do \
	    $(PKGCONF) --exists $$p 2>/dev/null || missing="$$missing $$p"; done; \
	echo '#include <lmdb.h>' | $(CC) $(CPPFLAGS) -E -x c - >/dev/null 2>&1 || missing="$$missing lmdb"; \
	command -v protoc-c >/dev/null 2>&1 || missing="$$missing protoc-c"; \
	if [ -n "$$missing" ]; then \
	    echo "pkgstore: missing build dependencies:$$missing; run 'make deps' (installs them with apt-get)" >&2; \
	    exit 1; fi

# ---------------------------------------------------------------- objects
$(LIB_OBJS): | preflight
$(BUILD)/obj/libpkgstore/%.o: libpkgstore/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) -DPKGSTORE_BUILDING_LIBRARY $(call pc_cflags,$(LIB_PKGS)) \
	    $(CFLAGS_ALL) -fPIC -fvisibility=hidden -MMD -MP -c $< -o $@

OBJ_CPPFLAGS = $(CPPFLAGS_ALL)
$(BUILD)/obj/tools/%.o $(BUILD)/obj/server/%.o $(BUILD)/obj/agent/%.o \
    $(BUILD)/obj/examples/%.o $(BUILD)/obj/common/%.o: OBJ_CPPFLAGS = $(CPPFLAGS_PUB)
$(BUILD)/obj/tests/%.o: OBJ_CPPFLAGS = $(CPPFLAGS_ALL) -DPKGSTORE_TEST_HOOKS
$(BUILD)/obj/%.o: %.c | preflight
	@mkdir -p $(@D)
	$(CC) $(OBJ_CPPFLAGS) $(call pc_cflags,$(LIB_PKGS) $(SERVER_PKGS) $(AGENT_PKGS) $(TEST_PKGS)) \
	    $(CFLAGS_ALL) -MMD -MP -c $< -o $@

# ---------------------------------------------------------------- test build
# Test hooks (#ifdef PKGSTORE_TEST_HOOKS: the install module's fault
# injection, the agent's PKGSTORE_AGENT_TEST_FAULT) exist only in a second
# build of the files that hold them: libpkgstore-test.a, which the unit
# tests link, and $(BUILD)/test-bin/pkgstore-agent, which the agent's fault
# tests run. The release libraries and programs have none of them.
HOOK_LIB_SRCS   := $(shell grep -l PKGSTORE_TEST_HOOKS $(LIB_SRCS) 2>/dev/null)
HOOK_AGENT_SRCS := $(shell grep -l PKGSTORE_TEST_HOOKS $(wildcard agent/*.c) 2>/dev/null)
TESTLIB         := $(BUILD)/lib/libpkgstore-test.a
TESTLIB_OBJS    := $(filter-out $(HOOK_LIB_SRCS:%.c=$(BUILD)/obj/%.o),$(LIB_OBJS)) \
                   $(HOOK_LIB_SRCS:%.c=$(BUILD)/obj-test/%.o)
$(BUILD)/obj-test/libpkgstore/%.o: libpkgstore/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_ALL) -DPKGSTORE_BUILDING_LIBRARY -DPKGSTORE_TEST_HOOKS \
	    $(call pc_cflags,$(LIB_PKGS)) $(CFLAGS_ALL) -fPIC -fvisibility=hidden -MMD -MP -c $< -o $@
$(BUILD)/obj-test/agent/%.o: agent/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_PUB) -DPKGSTORE_TEST_HOOKS $(call pc_cflags,$(AGENT_PKGS) jansson) \
	    $(CFLAGS_ALL) -MMD -MP -c $< -o $@
$(TESTLIB): $(TESTLIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^
-include $(shell find $(BUILD)/obj-test -name '*.d' 2>/dev/null)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---------------------------------------------------------------- library
$(SHLIB): $(LIB_OBJS)
	@mkdir -p $(@D)
	$(CC) -shared -Wl,-soname,$(SHLIB_SONAME) $(CFLAGS_ALL) $(LDFLAGS) $(XLDFLAGS) \
	    -o $@ $^ $(LIB_LIBS)
	ln -sf $(SHLIB_NAME).$(VERSION) $(BUILD)/lib/$(SHLIB_SONAME)
	ln -sf $(SHLIB_SONAME) $(BUILD)/lib/$(SHLIB_NAME)

$(STLIB): $(LIB_OBJS)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $^

# Libs.private names every library libpkgstore.a needs, once; there is no
# Requires.private, whose `pkg-config --static` would recurse into the
# private libraries of libarchive (static -dev packages a Debian system
# need not have). The public headers include no third-party header.
$(BUILD)/pkgstore.pc: Makefile
	@mkdir -p $(@D)
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCDIR)' '' \
	    'Name: pkgstore' 'Description: content-addressed package store for OpenTelemetry Collector fleets' \
	    'Version: $(VERSION)' 'Libs: -L$${libdir} -lpkgstore' \
	    'Libs.private: $(LIB_LIBS)' \
	    'Cflags: -I$${includedir}' > $@

# ---------------------------------------------------------------- programs
$(TOOLS): $(BUILD)/bin/%: $(BUILD)/obj/tools/%.o $(TOOL_HOBJS) $(COMMON_OBJS) $(SHLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) $(XLDFLAGS) $(RPATH_LDFLAGS) -o $@ \
	    $(filter %.o,$^) $(PROG_LDLIBS) $(call pc_libs,$(TOOL_PKGS)) -lpthread -lm

# The web console (ui/*) is compiled into pkgstored: embed-ui.sh writes its
# files as byte arrays into a generated source, rebuilt when a file in ui/
# changes, or one is added or removed (the directory's own time changes).
UI_FILES := $(sort $(wildcard ui/*))
$(BUILD)/gen/console_files.c: $(UI_FILES) $(wildcard ui) server/http/embed-ui.sh
	@mkdir -p $(@D)
	sh server/http/embed-ui.sh $@ $(UI_FILES)
$(BUILD)/obj/gen/console_files.o: $(BUILD)/gen/console_files.c server/http/console_files.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_PUB) -Iserver/http $(CFLAGS_ALL) -c $< -o $@

# OpAMP's messages (proto/opamp.proto): protobuf-c generates the C code at
# build time, since its generated code checks the runtime's version. Sources
# that use it include "opamp.pb-c.h" with $(OPAMP_CPPFLAGS) and depend on
# $(OPAMP_H); programs link $(OPAMP_OBJ) and $(OPAMP_LIBS).
OPAMP_GEN      := $(BUILD)/gen/proto
OPAMP_H        := $(OPAMP_GEN)/opamp.pb-c.h
OPAMP_OBJ      := $(BUILD)/obj/gen/proto/opamp.pb-c.o
OPAMP_CPPFLAGS := -I$(OPAMP_GEN) $(call pc_cflags,libprotobuf-c)
OPAMP_LIBS     := $(or $(call pc_libs,libprotobuf-c),-lprotobuf-c)
$(OPAMP_GEN)/opamp.pb-c.c $(OPAMP_H) &: proto/opamp.proto
	@mkdir -p $(OPAMP_GEN)
	protoc-c --c_out=$(OPAMP_GEN) -Iproto proto/opamp.proto
$(OPAMP_OBJ): $(OPAMP_GEN)/opamp.pb-c.c $(OPAMP_H)
	@mkdir -p $(@D)
	$(CC) $(OPAMP_CPPFLAGS) $(CFLAGS_ALL) -c $< -o $@
$(OPAMP_GEN)/opamp.pb-c.c: | preflight
all: $(OPAMP_OBJ)

# The OpAMP server (server/opamp/) uses the generated messages.
$(BUILD)/obj/server/opamp/%.o: OBJ_CPPFLAGS = $(CPPFLAGS_PUB) $(OPAMP_CPPFLAGS)
$(BUILD)/obj/server/opamp/opamp.o: $(OPAMP_H)

$(BUILD)/bin/pkgstored: $(SERVER_SRCS:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/console_files.o \
    $(COMMON_OBJS) $(OPAMP_OBJ) $(SHLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) $(XLDFLAGS) $(RPATH_LDFLAGS) -o $@ \
	    $(filter %.o,$^) $(PROG_LDLIBS) $(call pc_libs,$(SERVER_PKGS)) $(LMDB_LIBS) \
	    $(OPAMP_LIBS) -lpthread

# The resident agent maps neither libcurl nor OpenSSL nor libarchive (its
# idle memory budget is smaller than theirs): it takes only libpkgstore's
# POSIX-only objects (install_files, digest_text, error) from the static
# library, and runs pkgstore-agent-helper for the rest. Linking without
# $(LIB_LIBS) proves it: a pulled object that needs them fails the link.
$(BUILD)/bin/pkgstore-agent: $(AGENT_SRCS:%.c=$(BUILD)/obj/%.o) $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) $(XLDFLAGS) -Wl,--as-needed -o $@ \
	    $(filter %.o,$^) $(STLIB) $(call pc_libs,yaml-0.1 jansson)

# The agent's test build (see "test build" above), with its helper beside it.
AGENT_TEST_OBJS := $(filter-out $(HOOK_AGENT_SRCS:%.c=$(BUILD)/obj/%.o),$(AGENT_SRCS:%.c=$(BUILD)/obj/%.o)) \
                   $(HOOK_AGENT_SRCS:%.c=$(BUILD)/obj-test/%.o)
$(BUILD)/test-bin/pkgstore-agent: $(AGENT_TEST_OBJS) $(STLIB) $(BUILD)/bin/pkgstore-agent-helper
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) $(XLDFLAGS) -Wl,--as-needed -o $@ \
	    $(filter %.o,$^) $(STLIB) $(call pc_libs,yaml-0.1 jansson)
	ln -sf ../bin/pkgstore-agent-helper $(@D)/pkgstore-agent-helper
ifneq ($(AGENT_SRCS),)
all: $(BUILD)/test-bin/pkgstore-agent
endif

# The helper speaks OpAMP for the agent (agent/helper/opamp.c): protobuf-c
# lives here, never in the resident agent.
$(BUILD)/obj/agent/helper/opamp.o: OBJ_CPPFLAGS = $(CPPFLAGS_PUB) $(OPAMP_CPPFLAGS)
$(BUILD)/obj/agent/helper/opamp.o: $(OPAMP_H)
$(BUILD)/bin/pkgstore-agent-helper: $(HELPER_SRCS:%.c=$(BUILD)/obj/%.o) $(OPAMP_OBJ) $(SHLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) $(XLDFLAGS) -Wl,-rpath,'$$ORIGIN/../lib:$$ORIGIN/../../lib' \
	    -o $@ $(filter %.o,$^) $(PROG_LDLIBS) $(call pc_libs,libcurl jansson) $(OPAMP_LIBS) -lpthread

$(BUILD)/bin/example-%: $(BUILD)/obj/examples/%.o $(SHLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) $(XLDFLAGS) $(RPATH_LDFLAGS) -o $@ \
	    $(filter %.o,$^) $(PROG_LDLIBS)

# Benchmark drivers (bench/*.c) link the static library.
$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) $(XLDFLAGS) -o $@ $(filter %.o,$^) $(STLIB) $(LIB_LIBS)

# The fleet (server/fleet/) without HTTP: bench/policy.c and
# tests/test_fleet.c link it with the server's log.c.
FLEET_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(sort $(wildcard server/fleet/*.c)) server/log.c)
$(BUILD)/bench/policy: $(BUILD)/obj/bench/policy.o $(FLEET_OBJS) $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) $(XLDFLAGS) -o $@ $(filter %.o,$^) $(STLIB) $(LIB_LIBS)

# ---------------------------------------------------------------- fake collector
# (section owned by the agent work: examples/fake-otelcol/ variants go here)
# One source, one binary per behaviour: build/bin/fake-otelcol-<variant>.
# fake-otelcol-v1/v2 are "good" and fake-otelcol-v3 "crashes-after" with
# distinct baked-in versions (so distinct digests) for the demo and tests.
FAKE_SRC      := examples/fake-otelcol/fake-otelcol.c
FAKE_VARIANTS := good validate-fails crashes-at-start crashes-after never-healthy \
                 no-bind ignores-sigterm
FAKE_BINS     := $(FAKE_VARIANTS:%=$(BUILD)/bin/fake-otelcol-%) \
                 $(BUILD)/bin/fake-otelcol-v1 $(BUILD)/bin/fake-otelcol-v2 \
                 $(BUILD)/bin/fake-otelcol-v3
FAKE_CC = $(CC) $(CPPFLAGS_PUB) $(call pc_cflags,libmicrohttpd) $(CFLAGS_ALL) $(LDFLAGS) \
    $(XLDFLAGS) -o $@ $< $(call pc_libs,libmicrohttpd) -lpthread
$(FAKE_VARIANTS:%=$(BUILD)/bin/fake-otelcol-%): $(BUILD)/bin/fake-otelcol-%: $(FAKE_SRC)
	@mkdir -p $(@D)
	$(FAKE_CC) -DFAKE_VARIANT='"$*"' -DFAKE_VERSION='"0.1.0-$*"'
$(BUILD)/bin/fake-otelcol-v1: $(FAKE_SRC)
	@mkdir -p $(@D)
	$(FAKE_CC) -DFAKE_VARIANT='"good"' -DFAKE_VERSION='"1.0.0"'
$(BUILD)/bin/fake-otelcol-v2: $(FAKE_SRC)
	@mkdir -p $(@D)
	$(FAKE_CC) -DFAKE_VARIANT='"good"' -DFAKE_VERSION='"2.0.0"'
$(BUILD)/bin/fake-otelcol-v3: $(FAKE_SRC)
	@mkdir -p $(@D)
	$(FAKE_CC) -DFAKE_VARIANT='"crashes-after"' -DFAKE_VERSION='"3.0.0"'
# A scripted stand-in for pkgstored (corrupt blobs, cut downloads), or a
# tampering proxy in front of the real one, for the agent's end-to-end tests.
$(BUILD)/bin/fake-pkgstored: tests/fixtures/fake-pkgstored.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS_PUB) $(call pc_cflags,libmicrohttpd libcurl jansson) $(CFLAGS_ALL) $(LDFLAGS) \
	    $(XLDFLAGS) -o $@ $< $(call pc_libs,libmicrohttpd libcurl jansson) -lpthread
all: $(FAKE_BINS) $(BUILD)/bin/fake-pkgstored

# ---------------------------------------------------------------- tests
# Unit tests link the static library's test build: they may reach ps_*
# internals where a public entry point cannot provoke the case (fault
# injection).
TEST_HOBJS := $(TEST_HSRCS:%.c=$(BUILD)/obj/%.o)
$(BUILD)/tests/test_%: $(BUILD)/obj/tests/test_%.o $(TEST_HOBJS) $(TESTLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) $(XLDFLAGS) -o $@ $(filter %.o,$^) $(TESTLIB) \
	    $(LIB_LIBS) $(call pc_libs,$(TEST_PKGS))

$(BUILD)/tests/test_fleet: $(BUILD)/obj/tests/test_fleet.o $(TEST_HOBJS) $(FLEET_OBJS) $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) $(XLDFLAGS) -o $@ $(filter %.o,$^) $(STLIB) \
	    $(LIB_LIBS) $(call pc_libs,$(TEST_PKGS))

# fuzz/replay.c gives every harness a main() that replays its corpus. A
# harness of program code lists the objects of the program sources it needs
# in FUZZ_EXTRA_<target> (they must not need libmicrohttpd, libcurl or libyaml).
FUZZ_EXTRA_policy_body := server/api/policy_body.o
# the parsers pkgstored runs before authentication (no libmicrohttpd)
FUZZ_EXTRA_http_parse := server/http/parse.o
# fuzz_heartbeat posts to the fleet, as tests/test_fleet.c does.
FUZZ_EXTRA_heartbeat := $(patsubst %.c,%.o,$(sort $(wildcard server/fleet/*.c)) server/log.c)
# fuzz_opamp_server drives the OpAMP exchange over a fleet (no libmicrohttpd)
# and decodes with the generated messages (OPAMP_* below: the protobuf-c
# runtime is linked by its own rule).
FUZZ_EXTRA_opamp_server := server/opamp/opamp.o server/opamp/agents.o gen/proto/opamp.pb-c.o \
                           $(FUZZ_EXTRA_heartbeat)
.SECONDEXPANSION:
$(BUILD)/fuzz/replay_fuzz_%: $(BUILD)/obj/fuzz/fuzz_%.o $(BUILD)/obj/fuzz/replay.o \
        $$(addprefix $(BUILD)/obj/,$$(FUZZ_EXTRA_$$*)) $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) $(XLDFLAGS) -o $@ $(filter %.o,$^) $(STLIB) $(LIB_LIBS)

$(BUILD)/obj/fuzz/fuzz_opamp_server.o: OBJ_CPPFLAGS = $(CPPFLAGS_ALL) $(OPAMP_CPPFLAGS)
$(BUILD)/obj/fuzz/fuzz_opamp_server.o: $(OPAMP_H)
$(BUILD)/fuzz/replay_fuzz_opamp_server: $(BUILD)/obj/fuzz/fuzz_opamp_server.o \
        $(BUILD)/obj/fuzz/replay.o $(addprefix $(BUILD)/obj/,$(FUZZ_EXTRA_opamp_server)) $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) $(XLDFLAGS) -o $@ $(filter %.o,$^) $(STLIB) $(LIB_LIBS) \
	    $(OPAMP_LIBS)

# The agent's harnesses (fuzz/fuzz_agent_*.c) also link the agent's pure
# parsers: what it receives from a server, the helper and its config file.
AGENT_FUZZ_SRCS := agent/reply.c agent/util.c agent/config.c agent/helper/range.c
$(BUILD)/fuzz/replay_fuzz_agent_%: $(BUILD)/obj/fuzz/fuzz_agent_%.o $(BUILD)/obj/fuzz/replay.o \
    $(AGENT_FUZZ_SRCS:%.c=$(BUILD)/obj/%.o) $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS) $(XLDFLAGS) -o $@ $(filter %.o,$^) $(STLIB) $(LIB_LIBS) \
	    $(call pc_libs,yaml-0.1 jansson)

# Keep objects that are only intermediates of test and fuzz binaries.
.SECONDARY:

.PHONY: test asan unit-test fuzz-replay e2e-test
TEST_ENV := PKGSTORE_BIN=$(abspath $(BUILD)/bin) PKGSTORE_BUILD=$(abspath $(BUILD)) \
            PKGSTORE_SRC=$(CURDIR)

# `make test` and `make asan` install what is missing first (make deps, a
# quick dpkg-query when all is there), then build in a sub-make: as plain
# prerequisites deps and the build would run side by side under -j.
.PHONY: test-now asan-now
test asan: deps
	@$(MAKE) --no-print-directory $@-now

# The three suites run one after the other (never interleaved under -j);
# every suite runs even if an earlier one failed, and the result is failure.
test-now: all $(TESTS) $(FUZZ_REPLAY)
	@fail=0; for suite in unit-test fuzz-replay e2e-test; do \
	    $(MAKE) --no-print-directory -j1 $$suite || fail=1; done; \
	if [ $$fail = 0 ]; then echo "make test: all suites passed"; else echo "make test: FAILED"; fi; \
	exit $$fail

unit-test: $(TESTS)
	@fail=0; for t in $(TESTS); do \
	    echo "== $$t"; \
	    $(TEST_ENV) $$t || { echo "FAILED: $$t"; fail=1; }; \
	done; exit $$fail

fuzz-replay: $(FUZZ_REPLAY)
	@fail=0; for r in $(FUZZ_REPLAY); do \
	    target=$${r##*/replay_fuzz_}; \
	    $$r fuzz/corpus/$$target || { echo "FAILED: $$r"; fail=1; }; \
	done; exit $$fail

E2E := $(sort $(wildcard tests/e2e/*.t))
e2e-test: all
ifneq ($(E2E),)
	$(TEST_ENV) prove -v $(E2E)
endif

# ---------------------------------------------------------------- sanitizers
.PHONY: asan
ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
asan-now:
	$(MAKE) BUILD=build-asan CFLAGS='-O1 -g' XCFLAGS='-Werror $(ASAN_FLAGS)' \
	    XLDFLAGS='$(ASAN_FLAGS)' PKGSTORE_SANITIZED=1 test-now

# ---------------------------------------------------------------- fuzzing (clang)
.PHONY: fuzz fuzz-smoke
FUZZ_BUILD := build-fuzz
FUZZ_BINS  := $(FUZZ_SRCS:fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer-no-link $(FUZZ_SAN) $(WARNINGS) $(CPPFLAGS_ALL)
# The library is compiled once into an instrumented static archive; each
# harness links only the objects it needs (and one harness does not break
# because an unrelated module is mid-merge).
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_HOBJS    := $(FUZZ_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o)
fuzz: $(FUZZ_BINS)
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $(call pc_cflags,$(LIB_PKGS)) -MMD -MP -c $< -o $@
$(FUZZ_BUILD)/libpkgstore-fuzz.a: $(FUZZ_LIB_OBJS)
	rm -f $@
	ar rcs $@ $^
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/fuzz/fuzz_%.o \
        $$(addprefix $(FUZZ_BUILD)/obj/,$$(FUZZ_EXTRA_$$*)) $(FUZZ_BUILD)/libpkgstore-fuzz.a
	clang -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(LIB_LIBS)
# the generated OpAMP code, instrumented, for fuzz_opamp_server
$(FUZZ_BUILD)/obj/gen/proto/opamp.pb-c.o: $(OPAMP_GEN)/opamp.pb-c.c $(OPAMP_H)
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $(OPAMP_CPPFLAGS) -c $< -o $@
$(FUZZ_BUILD)/obj/server/opamp/%.o $(FUZZ_BUILD)/obj/fuzz/fuzz_opamp_server.o: \
    FUZZ_CFLAGS += $(OPAMP_CPPFLAGS)
$(FUZZ_BUILD)/obj/server/opamp/opamp.o $(FUZZ_BUILD)/obj/fuzz/fuzz_opamp_server.o: $(OPAMP_H)
$(FUZZ_BUILD)/fuzz_opamp_server: $(FUZZ_BUILD)/obj/fuzz/fuzz_opamp_server.o \
        $(addprefix $(FUZZ_BUILD)/obj/,$(FUZZ_EXTRA_opamp_server)) $(FUZZ_BUILD)/libpkgstore-fuzz.a
	clang -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(LIB_LIBS) $(OPAMP_LIBS)
$(FUZZ_BUILD)/fuzz_agent_%: $(FUZZ_BUILD)/obj/fuzz/fuzz_agent_%.o \
    $(AGENT_FUZZ_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o) $(FUZZ_BUILD)/libpkgstore-fuzz.a
	clang -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(LIB_LIBS) $(call pc_libs,yaml-0.1 jansson)
-include $(shell find $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
FUZZ_SECONDS ?= 60
fuzz-smoke: fuzz
	@for f in $(FUZZ_BINS); do \
	    t=$${f##*/fuzz_}; mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	    echo "== $$f ($(FUZZ_SECONDS) s)"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t || exit 1; \
	done

# ---------------------------------------------------------------- long runs
# Too long for make test, run before a release and after changes to the
# store, gc or the parsers: the crash test with LONG_KILLS SIGKILLs (gc,
# deletes and registry changes beside the adds), then every fuzz harness
# for LONG_FUZZ_SECONDS each, the archive harness extracting on a tmpfs
# (LONG_FUZZ_TMPFS; it writes a tree per input). Each prints its figures.
LONG_KILLS        ?= 10000
LONG_FUZZ_SECONDS ?= 3600
LONG_FUZZ_TMPFS   ?= /dev/shm
.PHONY: long-tests long-crash long-fuzz
long-tests: long-crash long-fuzz
long-crash: $(BUILD)/tests/test_store_crash
	PKGSTORE_CRASH_KILLS=$(LONG_KILLS) $(BUILD)/tests/test_store_crash
long-fuzz: fuzz
	@[ "$$(stat -f -c %T $(LONG_FUZZ_TMPFS))" = tmpfs ] || \
	    { echo "long-fuzz: $(LONG_FUZZ_TMPFS) is not a tmpfs (set LONG_FUZZ_TMPFS)"; exit 1; }
	@failed=; for f in $(FUZZ_BINS); do \
	    t=$${f##*/fuzz_}; mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/crashes/$$t; \
	    tmp=$${TMPDIR:-/tmp}; [ $$t = archive ] && tmp=$(LONG_FUZZ_TMPFS); \
	    echo "== $$f ($(LONG_FUZZ_SECONDS) s, TMPDIR=$$tmp)"; \
	    TMPDIR=$$tmp $$f -max_total_time=$(LONG_FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=$(FUZZ_BUILD)/crashes/$$t/ \
	        $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "long-fuzz: found crashes in:$$failed (inputs in $(FUZZ_BUILD)/crashes/)"; exit 1; fi

# ---------------------------------------------------------------- demo, run, bench
# deps, then a sub-make for the build and the script: as plain prerequisites
# deps and all would run side by side under -j, compiling against packages
# still being installed.
.PHONY: demo run bench demo-now run-now bench-now
demo run bench: deps
	@$(MAKE) --no-print-directory $@-now

demo-now: all
	@bash examples/demo.sh

run-now: all
	@bash examples/run.sh

bench-now: all
	@for b in $(sort $(wildcard bench/*.sh)); do echo "== $$b"; bash $$b || exit 1; done

# ---------------------------------------------------------------- deps
# Debian packages needed to build, test, demo and benchmark. (npm counts as
# present when an npm command is: NodeSource's nodejs bundles it and
# conflicts with Debian's npm package.)
DEB_PKGS := build-essential pkg-config libssl-dev openssl liblmdb-dev libzstd-dev zstd \
            libarchive-dev libjansson-dev libmicrohttpd-dev libgnutls28-dev libcurl4-openssl-dev \
            libyaml-dev libcmocka-dev curl xz-utils jq perl git procps iproute2 xxd bc \
            util-linux strace ca-certificates chromium nodejs npm \
            protobuf-c-compiler libprotobuf-c-dev protobuf-compiler python3 zlib1g-dev
.PHONY: deps
deps:
	@missing=$$(for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if command -v npm > /dev/null; then missing=$$(echo $$missing | tr ' ' '\n' | grep -vx npm); fi; \
	if [ -n "$$missing" ]; then \
	    echo "make deps: installing:" $$missing; \
	    if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    if [ -z "$$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then \
	        $$SUDO apt-get update -q || exit 1; \
	    fi; \
	    $$SUDO apt-get install -y -q --no-install-recommends $$missing \
	      || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q --no-install-recommends $$missing; } \
	      || exit 1; \
	fi
	@# the console's browser tests: puppeteer-core as pinned in tests/ui/package-lock.json
	@if [ ! -f tests/ui/node_modules/.package-lock.json ] || [ tests/ui/package-lock.json -nt tests/ui/node_modules/.package-lock.json ]; then \
	    cd tests/ui && npm ci --no-audit --no-fund; \
	fi

# ---------------------------------------------------------------- install
.PHONY: install
MANPAGES := $(sort $(wildcard docs/*.1 docs/*.8))
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR)/pkgstore \
	    $(DESTDIR)$(PCDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(filter-out $(EXAMPLES) %-helper,$(PROGRAMS)) $(DESTDIR)$(BINDIR)/
	install -d $(DESTDIR)$(LIBEXECDIR)
	install -m 0755 $(filter %-helper,$(PROGRAMS)) $(DESTDIR)$(LIBEXECDIR)/
	install -m 0755 $(SHLIB) $(DESTDIR)$(LIBDIR)/
	ln -sf $(SHLIB_NAME).$(VERSION) $(DESTDIR)$(LIBDIR)/$(SHLIB_SONAME)
	ln -sf $(SHLIB_SONAME) $(DESTDIR)$(LIBDIR)/$(SHLIB_NAME)
	install -m 0644 $(STLIB) $(DESTDIR)$(LIBDIR)/
	install -m 0644 include/pkgstore.h $(DESTDIR)$(INCDIR)/
	install -m 0644 include/pkgstore/*.h $(DESTDIR)$(INCDIR)/pkgstore/
	# $(BUILD)/pkgstore.pc keeps the PREFIX it was built with (it depends
	# only on the Makefile): write the install-time paths into the copy.
	sed -e 's|^prefix=.*|prefix=$(PREFIX)|' -e 's|^libdir=.*|libdir=$(LIBDIR)|' \
	    -e 's|^includedir=.*|includedir=$(INCDIR)|' $(BUILD)/pkgstore.pc \
	    > $(DESTDIR)$(PCDIR)/pkgstore.pc
	chmod 0644 $(DESTDIR)$(PCDIR)/pkgstore.pc
	for m in $(MANPAGES); do \
	    s=$${m##*.}; install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done
	# the console's files, as pkgstored serves them from its binary (for
	# a reverse proxy that would rather serve them itself)
	install -d $(DESTDIR)$(UIDIR)
	$(if $(UI_FILES),install -m 0644 $(UI_FILES) $(DESTDIR)$(UIDIR)/)

.PHONY: clean
clean:
	rm -rf build build-asan build-fuzz

# ---------------------------------------------------------------- server (pkgstored, push, policy)
# pkgstored and the operator tools read and write JSON themselves.
SERVER_PKGS += jansson
# pkgstored inflates gzip OpAMP bodies (server/api/opamp.c).
SERVER_PKGS += zlib
TOOL_PKGS   += jansson
