package sqlstore

import (
	"encoding/json"

	"github.com/cardrail/cardrail"
)

// eventText renders an event's payload column.
func eventText(e *cardrail.Event) (string, error) {
	b, err := e.AppendJSON(make([]byte, 0, 256+len(e.Data.Object)))
	return string(b), err
}

func rawText(b json.RawMessage) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}
