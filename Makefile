# SPDX-License-Identifier: GPL-2.0
# Entry points.  Everything also works as plain scripts (see README.md).
#   make deps     install Debian packages, Rust 1.95.0 + rust-src, bindgen, virtme-ng
#   make kernel   unpack, patch, configure and build the 6.12 tree (cached)
#   make module   build dm_thin_rs.ko against that tree
#   make test     everything CI runs: host tests, module build, guest tests
#   make demo     boot the guest and show the targets
#   make bench    benchmarks (not part of the test run)
.PHONY: all deps kernel module test demo bench host-test clean

all: module

deps:
	bash scripts/install-deps.sh
kernel:
	bash scripts/build-kernel.sh
module:
	bash scripts/build-module.sh
host-test:
	bash scripts/host-tests.sh
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh
bench:
	bash scripts/bench.sh
clean:
	bash scripts/build-module.sh clean
	cargo clean
