package flynnrel

// #include <stdint.h>
// #include "flynnrel.h"
import "C"

import (
	"runtime/cgo"
	"sync"
	"unsafe"
)

// ProgressFunc receives progress of a long operation: a phase ("download flynn-host-linux-amd64.gz",
// "layers", …), bytes or items done and the total (0 when unknown). Return false to cancel: the
// operation then fails with ErrCancelled and leaves nothing half-installed.
//
// It may be called from the library's worker threads of that one call, never two at a time.
// Once it has returned false it is not called again.
// If it panics, the operation is cancelled and the panic is re-raised in the calling goroutine
// once the library has returned.
type ProgressFunc func(phase string, done, total uint64) bool

// progress is the state behind one call's cgo.Handle.
type progress struct {
	mu sync.Mutex
	fn ProgressFunc
	// stopped: fn returned false or panicked. The library's other workers may still report
	// progress before they notice; fn is not called again.
	stopped  bool
	panicked bool
	panicVal interface{}
}

func (p *progress) call(phase string, done, total uint64) (keep bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return false
	}
	defer func() {
		if v := recover(); v != nil {
			p.panicked, p.panicVal, keep = true, v, false
		}
		p.stopped = !keep
	}()
	return p.fn(phase, done, total)
}

// goFlynnrelProgress is called by the C trampoline flynnrel_go_progress; user points to the
// uintptr_t holding the call's cgo.Handle.
//
//export goFlynnrelProgress
func goFlynnrelProgress(user unsafe.Pointer, phase *C.char, done, total C.uint64_t) C.bool {
	if user == nil {
		return C.bool(true)
	}
	p, ok := cgo.Handle(*(*C.uintptr_t)(user)).Value().(*progress)
	if !ok {
		return C.bool(false)
	}
	return C.bool(p.call(C.GoString(phase), uint64(done), uint64(total)))
}
