package cri

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/crimux/crimux/backends"
)

func TestDecodeOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  map[string]any
		errs []string // each a substring of one error, in order
	}{
		{"minimal", map[string]any{"endpoint": "unix:///run/x.sock"}, nil},
		{"plain path", map[string]any{"endpoint": "/run/x.sock", "remote_handler": "kata", "timeout": "30s"}, nil},
		{"no endpoint", map[string]any{}, []string{"endpoint: required"}},
		{"tcp", map[string]any{"endpoint": "tcp://10.0.0.1:1234"}, []string{"endpoint: \"tcp://10.0.0.1:1234\": only unix sockets"}},
		{"relative", map[string]any{"endpoint": "unix://run/x.sock"}, []string{"not an absolute socket path"}},
		{"bad remote handler", map[string]any{"endpoint": "/x", "remote_handler": "Kata_QEMU"}, []string{"remote_handler: \"Kata_QEMU\" is not a DNS label"}},
		{"bad timeout", map[string]any{"endpoint": "/x", "timeout": "soon"}, []string{"timeout: \"soon\" is not a positive duration"}},
		{"zero timeout", map[string]any{"endpoint": "/x", "timeout": "0s"}, []string{"timeout: \"0s\""}},
		{"unknown key", map[string]any{"endpoint": "/x", "runtime_path": "runc"}, []string{"runtime_path: unknown key (a cri handler's keys: endpoint, remote_handler, timeout)"}},
	} {
		o, errs := DecodeOptions(tc.raw)
		if len(errs) != len(tc.errs) {
			t.Errorf("%s: errors %v, want %d", tc.name, errs, len(tc.errs))
			continue
		}
		for i, want := range tc.errs {
			if !strings.Contains(errs[i].Error(), want) {
				t.Errorf("%s: error %q, want it to say %q", tc.name, errs[i], want)
			}
		}
		if len(errs) == 0 && (o.Timeout == "" || o.timeout() <= 0 || !strings.HasPrefix(o.socket(), "/")) {
			t.Errorf("%s: defaults not filled in: %+v", tc.name, o)
		}
	}
	if o, _ := DecodeOptions(map[string]any{"endpoint": "unix:///run/x.sock"}); o.timeout() != DefaultTimeout || o.socket() != "/run/x.sock" {
		t.Errorf("defaults: timeout %s socket %q", o.timeout(), o.socket())
	}
}

func TestMapErr(t *testing.T) {
	if err := mapErr(status.Error(codes.NotFound, "no such pod")); !errors.Is(err, backends.ErrNotFound) {
		t.Errorf("NotFound → %v", err)
	}
	if err := mapErr(status.Error(codes.DeadlineExceeded, "slow")); !errors.Is(err, backends.ErrDeadline) {
		t.Errorf("DeadlineExceeded → %v", err)
	}
	// Other codes reach the client as the remote gave them.
	for _, c := range []codes.Code{codes.InvalidArgument, codes.Unavailable, codes.FailedPrecondition, codes.ResourceExhausted} {
		if got := status.Code(mapErr(status.Error(c, "x"))); got != c {
			t.Errorf("%s → %s", c, got)
		}
	}
	if mapErr(nil) != nil {
		t.Error("nil → not nil")
	}
}

func TestMayHaveMade(t *testing.T) {
	for c, want := range map[codes.Code]bool{codes.DeadlineExceeded: true, codes.Unavailable: true, codes.Unknown: true,
		codes.InvalidArgument: false, codes.NotFound: false, codes.AlreadyExists: false, codes.FailedPrecondition: false} {
		if got := mayHaveMade(status.Error(c, "x")); got != want {
			t.Errorf("%s: %t, want %t", c, got, want)
		}
	}
}

func TestNetNSOf(t *testing.T) {
	for _, tc := range []struct{ info, want string }{
		{`{"pid": 42, "runtimeSpec": {"linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/cni-1"}]}}}`, "/var/run/netns/cni-1"},
		{`{"pid": 42, "runtimeSpec": {"linux": {"namespaces": [{"type": "network"}]}}}`, "/proc/42/ns/net"},
		{`{"pid": 42, "runtimeSpec": {"linux": {"namespaces": [{"type": "network", "path": "relative"}]}}}`, "/proc/42/ns/net"},
		{`{}`, ""},
		{`not json`, ""},
	} {
		if got := netnsOf(map[string]string{"info": tc.info}); got != tc.want {
			t.Errorf("%s → %q, want %q", tc.info, got, tc.want)
		}
	}
}
