package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

// TestStoreInGroup: a grouped store answers a group's records from its
// index, which follows adds, replacements (a record that changes group
// leaves the old one) and deletes.
func TestStoreInGroup(t *testing.T) {
	type rec struct{ id, pod string }
	s := NewGroupedStore(func(r rec) string { return r.pod })
	ids := func(g string) []string {
		var out []string
		for _, r := range s.InGroup(g) {
			out = append(out, r.id)
		}
		sort.Strings(out)
		return out
	}
	s.Add("c1", rec{"c1", "p1"})
	s.Add("c2", rec{"c2", "p1"})
	s.Add("c3", rec{"c3", "p2"})
	if got := ids("p1"); !reflect.DeepEqual(got, []string{"c1", "c2"}) {
		t.Fatalf("p1 = %v", got)
	}
	s.Add("c2", rec{"c2", "p2"}) // moved
	if got := ids("p1"); !reflect.DeepEqual(got, []string{"c1"}) {
		t.Fatalf("p1 after c2 moved = %v", got)
	}
	if got := ids("p2"); !reflect.DeepEqual(got, []string{"c2", "c3"}) {
		t.Fatalf("p2 after c2 moved = %v", got)
	}
	s.Delete("c1")
	s.Delete("c1") // again: fine
	s.Delete("nope")
	if got := ids("p1"); got != nil {
		t.Fatalf("p1 after delete = %v", got)
	}
	if got := ids("p3"); got != nil {
		t.Fatalf("unknown group = %v", got)
	}
	if got := len(s.List()); got != 2 {
		t.Fatalf("List has %d records, want 2", got)
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
	l := ck.Load()
	sbs, cts := l.Sandboxes, l.Containers
	if len(l.Errs) != 0 || len(sbs) != 1 || len(cts) != 1 || !l.Complete {
		t.Fatalf("load: %d sandboxes, %d containers, errs %v", len(sbs), len(cts), l.Errs)
	}
	if sbs[0].Config.Hostname != "h" || sbs[0].Status().IPs[0] != "10.0.0.2" || sbs[0].Handler != "runc" ||
		sbs[0].Status().PodResources.GetMemoryLimitInBytes() != 1<<30 || sbs[0].Status().PodOverhead != nil {
		t.Errorf("sandbox: %+v %+v", sbs[0].Metadata, sbs[0].Status())
	}
	if cts[0].Config.Command[0] != "sh" || cts[0].Status().Pid != 42 {
		t.Errorf("container: %+v", cts[0])
	}
	if err := ck.DeleteSandbox(sb); err != nil {
		t.Fatal(err)
	}
	if err := ck.DeleteSandbox(sb); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	// A save after the delete (an exit event racing RemovePodSandbox)
	// never brings the record back.
	if err := ck.SaveSandbox(sb); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ck.dir, "sandboxes", "s1.json")); !os.IsNotExist(err) {
		t.Fatalf("a removed sandbox's record came back: %v", err)
	}
}

// A container record's user keeps the JSON records written before User was
// the record's own type: the same bytes are written, and they load back.
func TestContainerRecordUser(t *testing.T) {
	for _, tc := range []struct {
		desc string
		user *User
		want string
	}{
		{desc: "with groups", user: &User{UID: 1000, GID: 1000, Groups: []int64{1000, 50}}, want: `"user":{"uid":1000,"gid":1000,"groups":[1000,50]},`},
		{desc: "root, no groups", user: &User{}, want: `"user":{"uid":0,"gid":0},`},
		{desc: "none", user: nil, want: ``},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ck, err := NewCheckpoint(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			c := NewContainer(ContainerMetadata{ID: "c1", SandboxID: "s1", Name: "n", ImageRef: "sha256:x", ImageName: "busybox", CreatedAt: 5,
				Config: &runtime.ContainerConfig{Command: []string{"sh"}}, User: tc.user},
				ContainerStatus{State: runtime.ContainerState_CONTAINER_RUNNING, Pid: 42})
			if err := ck.SaveContainer(c); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(ck.dir, "containers", "c1.json"))
			if err != nil {
				t.Fatal(err)
			}
			want := `{"id":"c1","name":"n","sandbox_id":"s1","image_ref":"sha256:x","image_name":"busybox","created_at":5,` + tc.want +
				`"status":{"state":1,"pid":42,"exit_code":0},"config":{"command":["sh"]}}`
			if string(b) != want {
				t.Fatalf("record\n got %s\nwant %s", b, want)
			}
			l := ck.Load()
			if len(l.Containers) != 1 || len(l.Errs) != 0 {
				t.Fatalf("load: %d containers, errs %v", len(l.Containers), l.Errs)
			}
			if got := l.Containers[0].User; !reflect.DeepEqual(got, tc.user) {
				t.Fatalf("loaded user %+v, want %+v", got, tc.user)
			}
		})
	}
}

// Unreadable records (empty, torn, not JSON, misnamed) are moved to the
// quarantine dir and their IDs reported, so nothing they name is swept;
// leftovers of cut-short writes are removed.
func TestCheckpointQuarantine(t *testing.T) {
	dir := t.TempDir()
	ck, err := NewCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	good := NewSandbox(Metadata{ID: "good", Config: &runtime.PodSandboxConfig{}}, Status{})
	if err := ck.SaveSandbox(good); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "sandboxes", "good.json"))
	for name, body := range map[string][]byte{
		"sandboxes/empty.json":      nil,
		"sandboxes/torn.json":       b[:len(b)/2],
		"sandboxes/misnamed.json":   b,
		"containers/garbage.json":   []byte("\x00\x01"),
		"sandboxes/good.json.1.tmp": []byte("{"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l := ck.Load()
	sort.Strings(l.Quarantined)
	if len(l.Sandboxes) != 1 || l.Sandboxes[0].ID != "good" || fmt.Sprint(l.Quarantined) != "[empty garbage misnamed torn]" || len(l.Errs) != 4 || !l.Complete {
		t.Fatalf("load: %d sandboxes, quarantined %v, errs %v", len(l.Sandboxes), l.Quarantined, l.Errs)
	}
	q, _ := os.ReadDir(filepath.Join(dir, "quarantine"))
	if len(q) != 4 {
		t.Fatalf("quarantine holds %d files", len(q))
	}
	if _, err := os.Stat(filepath.Join(dir, "sandboxes", "good.json.1.tmp")); !os.IsNotExist(err) {
		t.Fatalf("a temp file was left: %v", err)
	}
	// An unreadable records dir makes the load incomplete.
	if err := os.RemoveAll(filepath.Join(dir, "containers")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "containers"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if l := ck.Load(); l.Complete {
		t.Fatal("a records dir that can't be read still makes a complete load")
	}
}

// Concurrent saves of one record never share a temp file: each lands whole.
func TestCheckpointConcurrentSaves(t *testing.T) {
	ck, err := NewCheckpoint(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := NewContainer(ContainerMetadata{ID: "c", Config: &runtime.ContainerConfig{}}, ContainerStatus{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_ = c.Update(func(s ContainerStatus) (ContainerStatus, error) { s.Pid = uint32(i); return s, nil })
			if err := ck.SaveContainer(c); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if l := ck.Load(); len(l.Containers) != 1 || len(l.Errs) != 0 {
		t.Fatalf("after concurrent saves: %d containers, errs %v", len(l.Containers), l.Errs)
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

// TestInNetNSReusesThreads: entering a pod's netns for a read (its traffic
// counters, on every stats call) returns the thread to the node's netns
// and to Go's pool instead of ending it, so a stats list makes no threads;
// and no thread of crimux is left in a pod's netns.
func TestInNetNSReusesThreads(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("netns tests need root")
	}
	p, err := NewNetNS(t.TempDir(), "reuse")
	if err != nil {
		t.Fatal(err)
	}
	defer RemoveNetNS(p)
	var want unix.Stat_t
	if err := unix.Stat(p, &want); err != nil {
		t.Fatal(err)
	}
	tids := map[int]bool{}
	const calls = 50
	for range calls {
		err := InNetNS(p, func() error {
			var got unix.Stat_t
			if err := unix.Stat("/proc/thread-self/ns/net", &got); err != nil {
				return err
			}
			if got.Ino != want.Ino || got.Dev != want.Dev {
				return errors.New("f did not run in the netns")
			}
			tids[unix.Gettid()] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(tids) > calls/5 {
		t.Errorf("%d sequential reads ran on %d threads: each made a thread", calls, len(tids))
	}
	// No thread may be left in the netns: not even one the runtime would
	// discard, which ends a moment after its goroutine.
	if left := threadsIn(t, p); len(left) > 0 {
		t.Errorf("threads %v are left in the pod's netns (pid %d)", left, os.Getpid())
	}
}

// TestNewNetNSLeavesNoThreadInIt: the thread that makes a pod's netns
// leaves it before NewNetNS returns. One left behind holds the netns after
// the pod is gone; and when it is Go's main thread, which the runtime parks
// instead of ending, it holds it for crimux's whole life.
func TestNewNetNSLeavesNoThreadInIt(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("netns tests need root")
	}
	dir := t.TempDir()
	for i := range 40 {
		p, err := NewNetNS(dir, fmt.Sprintf("n%d", i))
		if err != nil {
			t.Fatal(err)
		}
		left := threadsIn(t, p)
		if err := RemoveNetNS(p); err != nil {
			t.Fatal(err)
		}
		if len(left) > 0 {
			t.Fatalf("netns %d: threads %v of this process (pid %d) are in it after NewNetNS returned", i, left, os.Getpid())
		}
	}
}

// threadsIn lists the threads of this process that are in the netns at p.
func threadsIn(t *testing.T, p string) []string {
	t.Helper()
	var ns unix.Stat_t
	if err := unix.Stat(p, &ns); err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var in []string
	for _, task := range tasks {
		var st unix.Stat_t
		if unix.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st) == nil && st.Ino == ns.Ino && st.Dev == ns.Dev {
			in = append(in, task.Name())
		}
	}
	return in
}
