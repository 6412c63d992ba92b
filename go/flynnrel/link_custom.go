//go:build flynnrel_custom

package flynnrel

// -tags flynnrel_custom: this package adds no linker flags; CGO_LDFLAGS names the library, e.g.
//
//	CGO_LDFLAGS="/opt/flynnrel/lib/libflynnrel.a -lpthread -ldl -lm" go build -tags flynnrel_custom
//	CGO_LDFLAGS="-L/opt/flynnrel/lib -lflynnrel" go build -tags flynnrel_custom
//
// (a release build: CGO_LDFLAGS="$PWD/target/release/libflynnrel.a -lpthread -ldl -lm").
