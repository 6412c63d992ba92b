//go:build !flynnrel_dynamic && !flynnrel_custom

package flynnrel

// The default: link the static library that `cargo build --lib` leaves in the checkout, so the
// resulting binary needs nothing at run time.

// #cgo LDFLAGS: ${SRCDIR}/../../target/debug/libflynnrel.a -lpthread -ldl -lm
import "C"
