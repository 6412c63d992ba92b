//go:build flynnrel_debug && !flynnrel_dynamic && !flynnrel_custom

package flynnrel

// -tags flynnrel_debug: link the checkout's debug static library (target/debug/libflynnrel.a,
// from `cargo build -p flynnrel --lib`): faster to rebuild while developing; never for a production build.

// #cgo LDFLAGS: ${SRCDIR}/../../target/debug/libflynnrel.a -lpthread -ldl -lm
import "C"
