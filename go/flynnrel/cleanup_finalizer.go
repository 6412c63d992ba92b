//go:build !go1.24

package flynnrel

// #include "flynnrel.h"
import "C"

import "runtime"

// Toolchains before Go 1.24 have no runtime.AddCleanup: the same safety net as a finalizer.
// Close clears it before it frees the handle, so the finalizer only runs for a Client that
// was never closed, and nothing else can use that Client any more.

type clientCleanup struct{}

func addClientCleanup(c *Client, _ *C.flynnrel_client) clientCleanup {
	runtime.SetFinalizer(c, func(c *Client) {
		if c.ptr != nil {
			C.flynnrel_client_free(c.ptr)
			c.ptr = nil
		}
	})
	return clientCleanup{}
}

// stop cancels the finalizer (Close freed the handle).
func (clientCleanup) stop(c *Client) { runtime.SetFinalizer(c, nil) }
