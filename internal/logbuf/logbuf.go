// Package logbuf buffers a service's log lines so that the access log does
// not cost a write system call per request.
//
// Lines below a level (warnings and errors, by default) reach the
// underlying writer within the flush interval, or when the buffer fills;
// a line at or above it flushes at once, with everything before it, so
// nothing that explains a failure waits in memory. Close flushes what is
// left. What a process killed outright (SIGKILL) had buffered, at most one
// interval of lines below the level, is lost.
package logbuf

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Writer is a buffered io.Writer safe for concurrent use, flushed every
// interval.
type Writer struct {
	mu   sync.Mutex
	buf  *bufio.Writer
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New buffers up to size bytes for w and flushes them every interval.
func New(w io.Writer, size int, interval time.Duration) *Writer {
	b := &Writer{buf: bufio.NewWriterSize(w, size), stop: make(chan struct{}), done: make(chan struct{})}
	go b.flushEvery(interval)
	return b
}

// Write buffers p; a write larger than what the buffer has room for goes
// through at once, after what was buffered.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Flush writes out what is buffered.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Flush()
}

// Close stops the periodic flush and flushes what is left. Writes after
// Close are still buffered, and written on the next Flush.
func (b *Writer) Close() error {
	b.once.Do(func() { close(b.stop) })
	<-b.done
	return b.Flush()
}

func (b *Writer) flushEvery(interval time.Duration) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			_ = b.Flush() // a failing log sink has nowhere to report to
		}
	}
}

// Handler wraps h, which writes to b, so that a record at level or above
// is flushed as soon as it is written.
func Handler(h slog.Handler, b *Writer, level slog.Level) slog.Handler {
	return &flushing{Handler: h, buf: b, level: level}
}

type flushing struct {
	slog.Handler
	buf   *Writer
	level slog.Level
}

func (f *flushing) Handle(ctx context.Context, r slog.Record) error {
	err := f.Handler.Handle(ctx, r)
	if r.Level >= f.level {
		if ferr := f.buf.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (f *flushing) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &flushing{Handler: f.Handler.WithAttrs(attrs), buf: f.buf, level: f.level}
}

func (f *flushing) WithGroup(name string) slog.Handler {
	return &flushing{Handler: f.Handler.WithGroup(name), buf: f.buf, level: f.level}
}
