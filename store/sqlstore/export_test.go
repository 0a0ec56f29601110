package sqlstore

// SetAfterOutboxRead sets the hook TakeEvents runs after reading the
// events; the returned function removes it.
func SetAfterOutboxRead(f func()) (restore func()) {
	afterOutboxRead = f
	return func() { afterOutboxRead = nil }
}
