package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cardrail/cardrail"
)

// equal fails the test when got and want differ, naming each field that
// does, so a failure says which column a store lost rather than printing two
// structs full of pointers.
func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	var diffs []string
	diff(what, reflect.ValueOf(got), reflect.ValueOf(want), &diffs)
	if len(diffs) == 0 {
		diffs = []string{fmt.Sprintf("%s: got %s, want %s", what, show(reflect.ValueOf(got)), show(reflect.ValueOf(want)))}
	}
	t.Errorf("%s differs:\n\t%s", what, strings.Join(diffs, "\n\t"))
}

var timeType = reflect.TypeFor[time.Time]()

// diff appends a line for each leaf where got and want differ.
func diff(path string, got, want reflect.Value, out *[]string) {
	if got.IsValid() && want.IsValid() && got.CanInterface() && want.CanInterface() &&
		reflect.DeepEqual(got.Interface(), want.Interface()) {
		return
	}
	switch {
	case !got.IsValid() || !want.IsValid() || got.Type() != want.Type():
	case got.Kind() == reflect.Struct && got.Type() != timeType:
		for i := range got.NumField() {
			if f := got.Type().Field(i); f.IsExported() {
				diff(path+"."+f.Name, got.Field(i), want.Field(i), out)
			}
		}
		return
	case got.Kind() == reflect.Pointer && !got.IsNil() && !want.IsNil():
		diff(path, got.Elem(), want.Elem(), out)
		return
	case got.Kind() == reflect.Slice && got.Len() == want.Len() && got.Type().Elem().Kind() != reflect.Uint8:
		for i := range got.Len() {
			diff(fmt.Sprintf("%s[%d]", path, i), got.Index(i), want.Index(i), out)
		}
		return
	}
	*out = append(*out, fmt.Sprintf("%s: got %s, want %s", path, show(got), show(want)))
}

// show renders a value for a failure message: pointers by what they point
// to, times in full, composites as JSON.
func show(v reflect.Value) string {
	switch {
	case !v.IsValid():
		return "<invalid>"
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			return "nil"
		}
		return "&" + show(v.Elem())
	case v.Type() == timeType:
		return v.Interface().(time.Time).Format(time.RFC3339Nano)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8:
		return fmt.Sprintf("%q", v.Bytes())
	case v.Kind() == reflect.Struct, v.Kind() == reflect.Slice, v.Kind() == reflect.Map:
		if v.CanInterface() {
			if b, err := json.Marshal(v.Interface()); err == nil {
				return string(b)
			}
		}
	}
	if v.CanInterface() {
		return fmt.Sprintf("%#v", v.Interface())
	}
	return v.String()
}

// mustFail fails the test unless err wraps target.
func mustFail(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want one wrapping %q", what, err, target)
	}
}

// mustNotFind fails the test unless err wraps cardrail.ErrNoRows.
func mustNotFind(t *testing.T, what string, err error) {
	t.Helper()
	mustFail(t, what, err, cardrail.ErrNoRows)
}

// refs returns the references of a page's items, in order.
func refs[T any](items []T, ref func(*T) string) []string {
	out := make([]string, len(items))
	for i := range items {
		out[i] = ref(&items[i])
	}
	return out
}

func cardRef(c *cardrail.Card) string                   { return c.Reference }
func authorizationRef(a *cardrail.Authorization) string { return a.Reference }
