package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestStoreGet(t *testing.T) {
	s := NewStore[string]()
	s.Add("abc123", "one")
	s.Add("abd456", "two")
	for _, tc := range []struct {
		desc, id, want string
		err            error
	}{
		{desc: "full id", id: "abc123", want: "one"},
		{desc: "unique prefix", id: "abd", want: "two"},
		{desc: "ambiguous prefix", id: "ab", err: ErrAmbiguous},
		{desc: "missing", id: "zzz", err: ErrNotFound},
		{desc: "empty", id: "", err: ErrNotFound},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := s.Get(tc.id)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Get(%q) = %q, %v", tc.id, got, err)
			}
		})
	}
}

func TestRegistrar(t *testing.T) {
	r := NewRegistrar()
	if err := r.Reserve("pod", "id1"); err != nil {
		t.Fatal(err)
	}
	if err := r.Reserve("pod", "id1"); err != nil {
		t.Fatalf("re-reserve by holder: %v", err)
	}
	err := r.Reserve("pod", "id2")
	var nt *NameTakenError
	if !errors.As(err, &nt) || nt.Holder != "id1" || !errors.Is(err, ErrNameTaken) {
		t.Fatalf("reserve taken name: %v", err)
	}
	r.Release("pod", "id2") // not the holder: no effect
	if r.Holder("pod") != "id1" {
		t.Fatal("release by a non-holder freed the name")
	}
	r.Release("pod", "id1")
	if err := r.Reserve("pod", "id2"); err != nil {
		t.Fatalf("reserve after release: %v", err)
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	ck, err := NewCheckpoint(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sb := NewSandbox(Metadata{ID: "s1", Name: "n", Handler: "runc", Config: &runtime.PodSandboxConfig{Hostname: "h", Labels: map[string]string{"a": "b"}}},
		Status{State: runtime.PodSandboxState_SANDBOX_READY, IPs: []string{"10.0.0.2"}, NetworkReady: true,
			PodResources: &runtime.LinuxContainerResources{MemoryLimitInBytes: 1 << 30, CpuShares: 512}})
	c := NewContainer(ContainerMetadata{ID: "c1", SandboxID: "s1", Config: &runtime.ContainerConfig{Command: []string{"sh"}}},
		ContainerStatus{State: runtime.ContainerState_CONTAINER_RUNNING, Pid: 42})
	if err := ck.SaveSandbox(sb); err != nil {
		t.Fatal(err)
	}
	if err := ck.SaveContainer(c); err != nil {
		t.Fatal(err)
	}
	// A corrupt record is reported and skipped, not fatal.
	if err := os.WriteFile(filepath.Join(ck.dir, "sandboxes", "bad.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	sbs, cts, errs := ck.Load()
	if len(errs) != 1 || len(sbs) != 1 || len(cts) != 1 {
		t.Fatalf("load: %d sandboxes, %d containers, errs %v", len(sbs), len(cts), errs)
	}
	if sbs[0].Config.Hostname != "h" || sbs[0].Status().IPs[0] != "10.0.0.2" || sbs[0].Handler != "runc" ||
		sbs[0].Status().PodResources.GetMemoryLimitInBytes() != 1<<30 || sbs[0].Status().PodOverhead != nil {
		t.Errorf("sandbox: %+v %+v", sbs[0].Metadata, sbs[0].Status())
	}
	if cts[0].Config.Command[0] != "sh" || cts[0].Status().Pid != 42 {
		t.Errorf("container: %+v", cts[0])
	}
	if err := ck.DeleteSandbox("s1"); err != nil {
		t.Fatal(err)
	}
	if err := ck.DeleteSandbox("s1"); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
}

func TestExitedOnce(t *testing.T) {
	c := NewContainer(ContainerMetadata{ID: "c"}, ContainerStatus{State: runtime.ContainerState_CONTAINER_RUNNING, StartedAt: 1})
	if !c.Exited(3, time.Unix(10, 0), "") {
		t.Fatal("first exit not recorded")
	}
	if c.Exited(0, time.Unix(20, 0), "") {
		t.Fatal("second exit changed the status")
	}
	st := c.Status()
	if st.ExitCode != 3 || st.Reason != "Error" || st.FinishedAt != time.Unix(10, 0).UnixNano() {
		t.Fatalf("status %+v", st)
	}
}

func TestNetNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("netns tests need root")
	}
	dir := t.TempDir()
	p, err := NewNetNS(dir, "ns1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewNetNS(dir, "ns1"); err == nil {
		t.Fatal("creating an existing netns succeeded")
	}
	if err := InNetNS(p, func() error { return nil }); err != nil {
		t.Fatalf("enter netns: %v", err)
	}
	if err := RemoveNetNS(p); err != nil {
		t.Fatal(err)
	}
	if err := RemoveNetNS(p); err != nil {
		t.Fatalf("removing twice: %v", err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("netns file left: %v", err)
	}
}
