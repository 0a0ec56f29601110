//go:build !linux

package main

// cpuSample is only implemented on Linux.
func cpuSample() (cpuTimes, bool) { return cpuTimes{}, false }
