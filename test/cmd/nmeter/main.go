// Command nmeter stands in for busybox's nmeter in the node e2e suite's
// busybox image (Debian's busybox has no nmeter applet): the suite runs
// `nmeter -d0 '%3t'` for the time of day with milliseconds. It prints the
// format's %t fields (%Nt: N digits of the second's fraction) with the
// current UTC time, once per -d milliseconds (0: as fast as it can), until
// its output is closed.
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	delay, format := 1000, "%t"
	args := os.Args[1:]
	for len(args) > 0 {
		a := args[0]
		args = args[1:]
		switch {
		case a == "-d" && len(args) > 0:
			delay, _ = strconv.Atoi(args[0])
			args = args[1:]
		case strings.HasPrefix(a, "-d"):
			delay, _ = strconv.Atoi(a[2:])
		default:
			format = a
		}
	}
	for {
		if _, err := fmt.Println(render(format, time.Now().UTC())); err != nil {
			os.Exit(0)
		}
		time.Sleep(time.Duration(delay) * time.Millisecond)
	}
}

// render expands %t and %Nt (N = 1..9 fraction digits); other text is kept.
func render(format string, now time.Time) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 >= len(format) {
			b.WriteByte(format[i])
			continue
		}
		j := i + 1
		digits := 0
		if format[j] >= '0' && format[j] <= '9' {
			digits = int(format[j] - '0')
			j++
		}
		if j < len(format) && format[j] == 't' {
			b.WriteString(now.Format("15:04:05"))
			if digits > 0 {
				frac := fmt.Sprintf("%09d", now.Nanosecond())
				b.WriteString("." + frac[:digits])
			}
			i = j
			continue
		}
		b.WriteByte(format[i])
	}
	return b.String()
}
