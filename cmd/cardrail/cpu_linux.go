package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample reads this process's CPU time and the whole machine's busy and
// idle time so far (/proc/stat, in clock ticks of 10 ms).
func cpuSample() (cpuTimes, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuTimes{}, false
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, false
	}
	// user nice system idle iowait irq softirq steal
	var ticks [8]int64
	for i := range ticks {
		if ticks[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return cpuTimes{}, false
		}
	}
	const tick = 10 * time.Millisecond
	idle := time.Duration(ticks[3]+ticks[4]) * tick
	busy := time.Duration(ticks[0]+ticks[1]+ticks[2]+ticks[5]+ticks[6]+ticks[7]) * tick
	return cpuTimes{
		process: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		busy:    busy,
		idle:    idle,
	}, true
}
