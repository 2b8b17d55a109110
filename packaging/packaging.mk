# The agent's .deb and the OCI images; included by the root Makefile.
#
#   make package        target/packages/bulkhead-agent_VERSION_ARCH.deb, from a release build
#   make images         target/images/bulkhead-{operator,agent,collector}_VERSION.oci.tar,
#                       from release builds, named as the chart's default images
#   make test-package   lintian, systemd-analyze verify, a real dpkg install/remove/purge,
#                       the unit's capability set proven, the agent's --config tests
#   make test-images    skopeo inspect, chroot into each unpacked image and run --version
#
# make test runs test-package and test-images on debug builds: a release build
# of the three binaries takes about 25 minutes on two cores, and what the checks
# prove (the files, the libraries, the names, the tags) is the same for both.

CARGO ?= cargo
PKG_TARGET := $(or $(CARGO_TARGET_DIR),target)
# package, images and their tests build the same set of binaries, so cargo
# unifies the same features and one build serves all of them.
IMAGE_BINS := --bin bulkhead-operator --bin bulkhead-agent --bin bulkhead-collector

.PHONY: package images test-package test-images

package: deps
	$(CARGO) build --release $(IMAGE_BINS)
	bash packaging/build-deb.sh --profile release --out target/packages

images: deps
	$(CARGO) build --release $(IMAGE_BINS)
	bash scripts/images.sh --profile release --out target/images

# Needs root: dpkg -i on this machine (purged again), a network namespace.
test-package: deps
	$(CARGO) test -p bulkhead-agent --bin bulkhead-agent
	$(CARGO) build $(IMAGE_BINS)
	rm -rf target/packages-test
	bash packaging/build-deb.sh --profile debug --out target/packages-test
	bash packaging/test-deb-privileged.sh target/packages-test/bulkhead-agent_*.deb
	bash packaging/check-caps-privileged.sh $(PKG_TARGET)/debug/bulkhead-agent

# Needs root: chroot into the unpacked images.
test-images: deps
	$(CARGO) build $(IMAGE_BINS)
	rm -rf target/images-test
	bash scripts/images.sh --profile debug --out target/images-test
	bash scripts/check-images.sh target/images-test
