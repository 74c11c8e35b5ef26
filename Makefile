# Builds the BPF objects: every bpf/sensors/**/*.bpf.c compiled with clang
# -target bpf (CO-RE), then linked by the BPF static linker into one object
# shipped inside the Python package; bpf/enforce/*.bpf.c likewise into the
# enforcement object, bpf/netinspect/*.bpf.c into the network inspector's;
# plus the ring header walk
# (src/sentinel_edge/loader/ringwalk.c) as a tiny shared object loaded with
# ctypes by loader/ringbuf.py (which falls back to Python without it).
CLANG   ?= clang
BPFTOOL ?= bpftool
ARCH    := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
BUILD   := build/bpf
OUT     := src/sentinel_edge/_bpf/sentinel.bpf.o
SRCS    := $(shell find bpf/sensors -name '*.bpf.c' | sort)
OBJS    := $(patsubst bpf/%.bpf.c,$(BUILD)/%.o,$(SRCS))
HDRS    := $(shell find bpf -name '*.h')
ENF     := src/sentinel_edge/_bpf/enforce.bpf.o
ENFSRCS := $(shell find bpf/enforce -name '*.bpf.c' | sort)
ENFOBJS := $(patsubst bpf/%.bpf.c,$(BUILD)/%.o,$(ENFSRCS))
NI      := src/sentinel_edge/_bpf/netinspect.bpf.o
NISRCS  := $(shell find bpf/netinspect -name '*.bpf.c' | sort)
NIOBJS  := $(patsubst bpf/%.bpf.c,$(BUILD)/%.o,$(NISRCS))
WALK    := src/sentinel_edge/_bpf/ringwalk.so
WALKSRC := src/sentinel_edge/loader/ringwalk.c
HOSTCFLAGS := -O2 -Wall -Wextra -Werror -fPIC -shared
CFLAGS  := -g -O2 -Wall -Werror -Wno-unused-function -target bpf -D__TARGET_ARCH_$(ARCH) \
           -Ibpf -Ibpf/include -mcpu=v3

.PHONY: all clean vmlinux
all: $(OUT) $(ENF) $(NI) $(WALK)

$(BUILD)/%.o: bpf/%.bpf.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CLANG) $(CFLAGS) -c $< -o $@

$(OUT): $(OBJS)
	@mkdir -p $(dir $@)
	$(BPFTOOL) gen object $@ $(OBJS)

# enforcement: its own object, pinned in bpffs so it outlives the agent
$(ENF): $(ENFOBJS)
	@mkdir -p $(dir $@)
	$(BPFTOOL) gen object $@ $(ENFOBJS)

# network inspector: XDP (tail-called by the enforcement entry) and TC clsact programs
$(NI): $(NIOBJS)
	@mkdir -p $(dir $@)
	$(BPFTOOL) gen object $@ $(NIOBJS)

$(WALK): $(WALKSRC)
	@mkdir -p $(dir $@)
	$(CC) $(HOSTCFLAGS) -o $@ $<

# Regenerate bpf/include/vmlinux.h from the running kernel's BTF.
vmlinux:
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > bpf/include/vmlinux.h

clean:
	rm -rf build $(OUT) $(ENF) $(NI) $(WALK)
