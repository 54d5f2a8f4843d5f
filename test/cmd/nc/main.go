// Command nc stands in for netcat's UDP mode in the node e2e suite's agnhost
// image (Debian's busybox nc has no -u): `nc [-w SECS] -u HOST PORT` sends
// its standard input as one datagram and prints the replies until none has
// come for SECS (default 1). Without -u it runs busybox's nc.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

func main() {
	args := os.Args[1:]
	udp, wait := false, time.Second
	var rest []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-u":
			udp = true
		case a == "-w" && i+1 < len(args):
			n, err := strconv.Atoi(args[i+1])
			if err != nil {
				fail("nc: -w %q: %v", args[i+1], err)
			}
			wait = time.Duration(n) * time.Second
			i++
		default:
			rest = append(rest, a)
		}
	}
	if !udp {
		err := syscall.Exec("/bin/busybox", append([]string{"nc"}, os.Args[1:]...), os.Environ())
		fail("nc: exec busybox: %v", err)
	}
	if len(rest) != 2 {
		fail("usage: nc [-w SECS] -u HOST PORT")
	}
	conn, err := net.Dial("udp", net.JoinHostPort(rest[0], rest[1]))
	if err != nil {
		fail("nc: %v", err)
	}
	msg, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("nc: read stdin: %v", err)
	}
	if _, err := conn.Write(msg); err != nil {
		fail("nc: send: %v", err)
	}
	buf := make([]byte, 65536)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		n, err := conn.Read(buf)
		if err != nil {
			return // no reply within the wait: done, as netcat is
		}
		_, _ = os.Stdout.Write(buf[:n])
	}
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", a...)
	os.Exit(1)
}
