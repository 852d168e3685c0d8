package bench

// The process's own figures for the STATS line: CPU from getrusage(RUSAGE_SELF), RSS from
// /proc/self/status, heap from runtime.MemStats after a GC (hold mode only: a GC is not free).

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// held counts the streams a hold-mode server keeps.
var held int64

func cpuMicros() (user, sys int64) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, 0
	}
	return ru.Utime.Sec*1e6 + int64(ru.Utime.Usec), ru.Stime.Sec*1e6 + int64(ru.Stime.Usec)
}

func rssBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "VmRSS:") {
			rest := strings.TrimPrefix(line, "VmRSS:")
			kib, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kib * 1024
		}
	}
	return 0
}

// heap returns live heap bytes and the number of allocations so far; with gc it collects first
// so the figure is live data, not garbage.
func heap(gc bool) (int64, int64) {
	if gc {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc), int64(m.Mallocs)
}

func statsLine(hold bool) string {
	user, sys := cpuMicros()
	var heapB, allocs int64
	if hold {
		heapB, allocs = heap(true)
	}
	// handle_b: the interface value the application keeps per stream (the stream itself is
	// on the heap, already counted).
	return fmt.Sprintf("STATS user_us=%d sys_us=%d rss_b=%d heap_b=%d allocs=%d held=%d handle_b=16",
		user, sys, rssBytes(), heapB, allocs, atomic.LoadInt64(&held))
}
