package sqlstore

import "encoding/json"

func jsonText(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func rawText(b json.RawMessage) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}
