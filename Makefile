# Builds the BPF objects: every bpf/sensors/**/*.bpf.c compiled with clang
# -target bpf (CO-RE), then linked by the BPF static linker into one object
# shipped inside the Python package.
CLANG   ?= clang
BPFTOOL ?= bpftool
ARCH    := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
BUILD   := build/bpf
OUT     := src/sentinel_edge/_bpf/sentinel.bpf.o
SRCS    := $(shell find bpf/sensors -name '*.bpf.c' | sort)
OBJS    := $(patsubst bpf/%.bpf.c,$(BUILD)/%.o,$(SRCS))
HDRS    := $(shell find bpf -name '*.h')
CFLAGS  := -g -O2 -Wall -Werror -Wno-unused-function -target bpf -D__TARGET_ARCH_$(ARCH) \
           -Ibpf -Ibpf/include -mcpu=v3

.PHONY: all clean vmlinux
all: $(OUT)

$(BUILD)/%.o: bpf/%.bpf.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CLANG) $(CFLAGS) -c $< -o $@

$(OUT): $(OBJS)
	@mkdir -p $(dir $@)
	$(BPFTOOL) gen object $@ $(OBJS)

# Regenerate bpf/include/vmlinux.h from the running kernel's BTF.
vmlinux:
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > bpf/include/vmlinux.h

clean:
	rm -rf build $(OUT)
