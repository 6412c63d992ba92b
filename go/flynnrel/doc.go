// Package flynnrel is the Go binding of libflynnrel, Flynn's GitHub Releases distribution
// channel (docs/go-api.md#package-flynnrel). It translates only: every decision (versions, verification, the install
// transaction, the receipt) is made by the Rust library behind include/flynnrel.h.
//
// # Linking
//
// By default the package links the static, release-built library: the checkout's
// ../../target/release/libflynnrel.a (build it with `cargo build --release -p flynnrel --lib`), or, in a
// vendored copy of the module, the one in prebuilt/linux-amd64 that script/flynn-integrate puts
// there. Binaries need nothing at run time. Three build tags change that:
//
//   - flynnrel_debug: link ../../target/debug/libflynnrel.a (`cargo build -p flynnrel --lib`; development).
//   - flynnrel_dynamic: link ../../target/debug/libflynnrel.so, with that directory as rpath.
//   - flynnrel_custom: add no linker flags at all; name the library in CGO_LDFLAGS, e.g.
//     CGO_LDFLAGS="/opt/flynnrel/libflynnrel.a -lpthread -ldl -lm" (another directory, a
//     system-wide -lflynnrel).
//
// The header is ../../include/flynnrel.h, else prebuilt/flynnrel.h (a vendored copy);
// CGO_CFLAGS="-I DIR" puts another first.
//
// # Memory and threads
//
// Results cross the boundary as JSON and are decoded into Go values; C strings and error
// objects are freed before a function returns. A Client owns a C handle: call Close when done
// (a cleanup frees it if a Client becomes unreachable first). A Client is safe for concurrent
// use; Close waits for calls in flight. Progress callbacks may run on the library's worker
// threads; calls into one callback never overlap.
//
// # Errors
//
// Every failure of the library is an *Error carrying the stable status code and the library's
// message. Test for a kind with errors.Is(err, flynnrel.ErrChecksumMismatch) and friends.
package flynnrel
