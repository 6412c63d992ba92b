//go:build go1.24

package flynnrel

// #include "flynnrel.h"
import "C"

import "runtime"

// The module's go line is as low as Flynn's (go 1.13), so this file asks for the Go 1.24 it
// needs (runtime.AddCleanup, generics); older toolchains build cleanup_finalizer.go instead.

// clientCleanup frees a Client's C handle if the Client becomes unreachable without Close: a
// safety net only. The cleanup gets the C pointer, not the Client, so it cannot keep it alive.
type clientCleanup struct{ c runtime.Cleanup }

func addClientCleanup(c *Client, p *C.flynnrel_client) clientCleanup {
	return clientCleanup{runtime.AddCleanup(c, func(p *C.flynnrel_client) { C.flynnrel_client_free(p) }, p)}
}

// stop cancels the cleanup (Close freed the handle).
func (cl clientCleanup) stop(*Client) { cl.c.Stop() }
