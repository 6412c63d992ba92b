package flynnrel

// Vendoring copies only the packages a build imports: these two hold the header and the static
// library of a vendored copy (see their package docs and link_static.go).
import (
	_ "github.com/flynn/flynn/libflynnrel/go/flynnrel/prebuilt"
	_ "github.com/flynn/flynn/libflynnrel/go/flynnrel/prebuilt/linux-amd64"
)
