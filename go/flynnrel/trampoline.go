package flynnrel

// #include <stdint.h>
// #include <stdlib.h>
// #include "flynnrel.h"
//
// extern bool goFlynnrelProgress(void *user, char *phase, uint64_t done, uint64_t total);
//
// // The flynnrel_progress_cb the library calls: forwards to the exported Go function.
// static bool flynnrel_go_progress(void *user, const char *phase, uint64_t done, uint64_t total) {
// 	return goFlynnrelProgress(user, (char *)phase, done, total);
// }
//
// static flynnrel_progress_cb flynnrel_go_progress_cb(void) { return flynnrel_go_progress; }
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// progressArgs returns the callback and user pointer to pass for fn (NULL, NULL for nil fn), and
// finish, which must run after the C call returned: it deletes the handle, frees the user
// pointer and re-raises a panic of fn.
func progressArgs(fn ProgressFunc) (cb C.flynnrel_progress_cb, user unsafe.Pointer, finish func()) {
	if fn == nil {
		return nil, nil, func() {}
	}
	p := &progress{fn: fn}
	h := cgo.NewHandle(p)
	// The handle lives in C memory so that C holds no Go pointer.
	user = C.malloc(C.size_t(unsafe.Sizeof(C.uintptr_t(0))))
	*(*C.uintptr_t)(user) = C.uintptr_t(h)
	return C.flynnrel_go_progress_cb(), user, func() {
		h.Delete()
		C.free(user)
		p.mu.Lock()
		panicked, v := p.panicked, p.panicVal
		p.mu.Unlock()
		if panicked {
			panic(v)
		}
	}
}
