package conf

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
)

// TOML renders the configuration as a TOML file that Load reads back.
func (c *Config) TOML() string {
	var b strings.Builder
	writeTable(&b, "", reflect.ValueOf(*c))
	return b.String()
}

func writeTable(b *strings.Builder, prefix string, v reflect.Value) {
	t := v.Type()
	var tables []int
	for i := 0; i < t.NumField(); i++ {
		f := v.Field(i)
		tag := t.Field(i).Tag.Get("mapstructure")
		if f.Kind() == reflect.Struct || f.Kind() == reflect.Map && f.Type().Elem().Kind() == reflect.Struct {
			tables = append(tables, i)
			continue
		}
		if tag == ",remain" { // a driver's options: its keys at this level
			opts, _ := f.Interface().(map[string]any)
			keys := make([]string, 0, len(opts))
			for k := range opts {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(b, "%s = %s\n", k, tomlValue(reflect.ValueOf(opts[k])))
			}
			continue
		}
		fmt.Fprintf(b, "%s = %s\n", tag, tomlValue(f))
	}
	for _, i := range tables {
		key := t.Field(i).Tag.Get("mapstructure")
		if prefix != "" {
			key = prefix + "." + key
		}
		f := v.Field(i)
		if f.Kind() == reflect.Struct {
			fmt.Fprintf(b, "\n[%s]\n", key)
			writeTable(b, key, f)
			continue
		}
		keys := f.MapKeys()
		sort.Slice(keys, func(a, c int) bool { return keys[a].String() < keys[c].String() })
		for _, k := range keys {
			fmt.Fprintf(b, "\n[%s.%s]\n", key, k.String())
			writeTable(b, key+"."+k.String(), f.MapIndex(k))
		}
	}
}

func tomlValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		return fmt.Sprintf("%q", x.String())
	case string:
		return fmt.Sprintf("%q", x)
	case bool:
		return fmt.Sprint(x)
	case map[string]string:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		q := make([]string, len(keys))
		for i, k := range keys {
			q[i] = fmt.Sprintf("%q = %q", k, x[k])
		}
		return "{" + strings.Join(q, ", ") + "}"
	case []string:
		q := make([]string, len(x))
		for i, s := range x {
			q[i] = fmt.Sprintf("%q", s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	case []any:
		q := make([]string, len(x))
		for i, e := range x {
			q[i] = tomlValue(reflect.ValueOf(e))
		}
		return "[" + strings.Join(q, ", ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		q := make([]string, len(keys))
		for i, k := range keys {
			q[i] = fmt.Sprintf("%q = %s", k, tomlValue(reflect.ValueOf(x[k])))
		}
		return "{" + strings.Join(q, ", ") + "}"
	}
	return fmt.Sprintf("%v", v.Interface())
}
