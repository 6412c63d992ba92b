//go:build flynnrel_dynamic && !flynnrel_custom

package flynnrel

// -tags flynnrel_dynamic: link the checkout's shared library (target/debug/libflynnrel.so) and
// record its directory as the run-time search path.

// #cgo LDFLAGS: -L${SRCDIR}/../../target/debug -Wl,-rpath,${SRCDIR}/../../target/debug -lflynnrel
import "C"
