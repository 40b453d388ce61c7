//go:build !unix

package storetest

import "time"

// processCPU is not measured here; benchmarks then report 0 CPU per op.
func processCPU() time.Duration { return 0 }
