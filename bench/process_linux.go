package bench

import "syscall"

// childProcAttr makes the kernel stop the child coordinator if bench dies
// without stopping it, so no orphan keeps a port and the store open.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
