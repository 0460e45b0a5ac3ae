# Tongxin: the two commands.
#   make run    install what is missing, build, and serve on http://127.0.0.1:8080 (SQLite)
#   make test   install what the tests need too, then lint and run every test
#
# CARGO_TARGET_DIR may point outside the clone (CI caches builds under /var/cache).

CARGO ?= cargo
ARGS ?=
CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
export CARGO_TERM_COLOR ?= never

.PHONY: run build test lint test-parallel test-serial deps deps-test fmt clean

run: deps
	$(CARGO) build --release --locked -p tongxin-web
	"$(CARGO_TARGET_DIR)/release/tongxin" serve $(ARGS)

build: deps
	$(CARGO) build --release --locked -p tongxin-web

deps:
	scripts/install-deps.sh build

deps-test:
	scripts/install-deps.sh test

test: deps-test lint test-parallel test-serial

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features --locked -- -D warnings

# Everything except the browser and media tests, in parallel.
test-parallel:
	$(CARGO) test --workspace --all-features --locked -- --skip serial::

# Browser and media tests, one at a time: two cores shared by parallel browsers make
# results flaky.
test-serial:
	$(CARGO) test --workspace --all-features --locked -- serial:: --test-threads=1

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
