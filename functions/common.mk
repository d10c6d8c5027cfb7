# Shared by every functions/<name>/Makefile: `sam build` (BuildMethod: makefile, in source)
# calls the function's build-<LogicalId> target with ARTIFACTS_DIR set; the target builds the
# release product with the static Swift standard library and installs it as `bootstrap`.
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
# Amazon Linux 2023 has glibc 2.34 and an older C++ runtime than the machine that builds: the
# C++ runtime (BoringSSL needs it) is linked statically through a linker script that stands in
# for its shared library; hypot/hypotf are bound to their
# pre-2.35 symbol versions and arc4random (2.36) is replaced (Sources/GlibcCompat).
# scripts/check-al2023 proves it.
# --no-export-dynamic undoes the -export-dynamic of the static stdlib's link arguments: a
# bootstrap has no plugins to serve symbols to, and 6 500 fewer dynamic symbols make every cold
# start cheaper (about 10 % of a local verify run; scripts/bench verify). The binary stays PIE.
# The bootstraps have a build folder of their own (.build/lambda): a debug build (the tests)
# can run at the same time, SwiftPM's lock being per build folder (.ci/run overlaps them).
STATIC_LIBS := $(ROOT)/.build/static-libs
SWIFT_BUILD := swift build --package-path $(ROOT) --scratch-path $(ROOT)/.build/lambda -c release --static-swift-stdlib \
	-Xlinker -L$(STATIC_LIBS) -Xlinker --wrap=hypot -Xlinker --wrap=hypotf -Xlinker --wrap=arc4random \
	-Xlinker --no-export-dynamic

define install_bootstrap
	mkdir -p "$(STATIC_LIBS)"
	echo "INPUT($$(gcc -print-file-name=libstdc++.a))" > "$(STATIC_LIBS)/libstdc++.so"
	$(SWIFT_BUILD) --product $(1)
	mkdir -p "$(ARTIFACTS_DIR)"
	cp "$$($(SWIFT_BUILD) --show-bin-path)/$(1)" "$(ARTIFACTS_DIR)/bootstrap"
	strip "$(ARTIFACTS_DIR)/bootstrap"
endef
