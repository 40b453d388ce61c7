package coordinator

import (
	"context"
	"sync"
)

// mailbox is an unbounded FIFO between one producer side and one consumer
// goroutine, which takes everything queued at once. It sits in front of an
// executor stream in both directions: dispatching never blocks a task on a
// slow executor's flow control, and reading a stream never waits for the
// store.
type mailbox[T any] struct {
	mu     sync.Mutex // protects items and closed
	items  []T
	closed bool
	signal chan struct{} // capacity 1: something was pushed, or closed
}

func newMailbox[T any]() *mailbox[T] { return &mailbox[T]{signal: make(chan struct{}, 1)} }

// push queues v; after close it is dropped.
func (m *mailbox[T]) push(v T) {
	m.mu.Lock()
	if !m.closed {
		m.items = append(m.items, v)
	}
	m.mu.Unlock()
	m.nudge()
}

func (m *mailbox[T]) nudge() {
	select {
	case m.signal <- struct{}{}:
	default:
	}
}

// close drops what is queued and ends take.
func (m *mailbox[T]) close() {
	m.mu.Lock()
	m.closed = true
	m.items = nil
	m.mu.Unlock()
	m.nudge()
}

// rest returns what is queued without waiting.
func (m *mailbox[T]) rest() []T {
	m.mu.Lock()
	defer m.mu.Unlock()
	items := m.items
	m.items = nil
	return items
}

// take waits until something is queued and returns all of it, in order.
// It returns false once the mailbox is closed or ctx ends.
func (m *mailbox[T]) take(ctx context.Context) ([]T, bool) {
	for {
		m.mu.Lock()
		items, closed := m.items, m.closed
		m.items = nil
		m.mu.Unlock()
		if closed {
			return nil, false
		}
		if len(items) > 0 {
			return items, true
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-m.signal:
		}
	}
}
