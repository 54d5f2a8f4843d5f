package harness

import (
	"net"
	"strconv"
	"testing"
)

// TestFreeLoopbackIsOutsideTheEphemeralRange: crimux's debug and metrics
// addresses are chosen once and kept across the restarts the reliability
// tests make. A port from the kernel's ephemeral range can be taken, while
// crimux is down, by any outgoing connection or port-0 listener on the node
// (containerd pulling from the test registry, a streaming server), and the
// restarted crimux then fails to listen ("address already in use"), as it
// did once in CI.
func TestFreeLoopbackIsOutsideTheEphemeralRange(t *testing.T) {
	lo, hi, err := ephemeralPorts()
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		addr, err := freeLoopback()
		if err != nil {
			t.Fatal(err)
		}
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if port >= lo && port <= hi {
			t.Fatalf("freeLoopback gave %s, in the ephemeral range %d-%d", addr, lo, hi)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("the port freeLoopback gave is not free: %v", err)
		}
		l.Close()
	}
}
