package cuda

import "runtime"

// runKeepAlive keeps buffers whose addresses were passed to C as plain words reachable
// until this point.
func runKeepAlive(v ...any) {
	for _, x := range v {
		runtime.KeepAlive(x)
	}
}
