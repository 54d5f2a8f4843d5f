package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Checkpoint keeps sandbox and container records on disk so a restarted crimux
// knows its pods. Each record is one JSON file written atomically.
type Checkpoint struct {
	dir string
}

// NewCheckpoint returns a checkpoint under dir, creating it.
func NewCheckpoint(dir string) (*Checkpoint, error) {
	for _, d := range []string{filepath.Join(dir, "sandboxes"), filepath.Join(dir, "containers")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create checkpoint dir %q: %w", d, err)
		}
	}
	return &Checkpoint{dir: dir}, nil
}

type sandboxRecord struct {
	Metadata
	Status Status          `json:"status"`
	Config json.RawMessage `json:"config"`
}

type containerRecord struct {
	ContainerMetadata
	Status ContainerStatus `json:"status"`
	Config json.RawMessage `json:"config"`
}

// SaveSandbox writes the sandbox's record, durably; once the record was
// deleted it writes nothing (a late save never brings a removed pod back).
func (c *Checkpoint) SaveSandbox(s *Sandbox) error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	if s.removed {
		return nil
	}
	cfg, err := protojson.Marshal(s.Config)
	if err != nil {
		return fmt.Errorf("encode sandbox %s config: %w", s.ID, err)
	}
	return writeJSON(filepath.Join(c.dir, "sandboxes", s.ID+".json"), sandboxRecord{Metadata: s.Metadata, Status: s.Status(), Config: cfg})
}

// SaveContainer writes the container's record, as SaveSandbox does.
func (c *Checkpoint) SaveContainer(ct *Container) error {
	ct.saveMu.Lock()
	defer ct.saveMu.Unlock()
	if ct.removed {
		return nil
	}
	cfg, err := protojson.Marshal(ct.Config)
	if err != nil {
		return fmt.Errorf("encode container %s config: %w", ct.ID, err)
	}
	return writeJSON(filepath.Join(c.dir, "containers", ct.ID+".json"), containerRecord{ContainerMetadata: ct.ContainerMetadata, Status: ct.Status(), Config: cfg})
}

// DeleteSandbox removes the sandbox's record for good.
func (c *Checkpoint) DeleteSandbox(s *Sandbox) error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	if err := removeFile(filepath.Join(c.dir, "sandboxes", s.ID+".json")); err != nil {
		return err
	}
	s.removed = true
	return nil
}

// DeleteContainer removes the container's record for good.
func (c *Checkpoint) DeleteContainer(ct *Container) error {
	ct.saveMu.Lock()
	defer ct.saveMu.Unlock()
	if err := removeFile(filepath.Join(c.dir, "containers", ct.ID+".json")); err != nil {
		return err
	}
	ct.removed = true
	return nil
}

// Loaded is what Load found.
type Loaded struct {
	Sandboxes  []*Sandbox
	Containers []*Container
	// Quarantined are the IDs (from their file names) of records that could
	// not be read; each was moved to root_dir/quarantine. What they name
	// must be left alone: crimux no longer knows it, but it may be live.
	Quarantined []string
	// Errs says what went wrong, record by record.
	Errs []error
	// Complete is false when a records directory could not be read: then
	// crimux doesn't know what it has, and must not sweep anything.
	Complete bool
}

// Load reads every record. One that can't be read (empty, torn, not JSON,
// a config that doesn't decode) is moved to the quarantine dir and
// reported; what is left of crashed writes (*.tmp) is removed.
func (c *Checkpoint) Load() Loaded {
	l := Loaded{Complete: true}
	for _, p := range c.list("sandboxes", &l) {
		var r sandboxRecord
		err := readJSON(p, &r)
		if err == nil {
			r.Metadata.Config = &runtime.PodSandboxConfig{}
			if err = protojson.Unmarshal(r.Config, r.Metadata.Config); err != nil {
				err = fmt.Errorf("decode %q: %w", p, err)
			}
		}
		if err == nil && r.Metadata.ID+".json" != filepath.Base(p) {
			err = fmt.Errorf("record %q is for sandbox %q", p, r.Metadata.ID)
		}
		if err != nil {
			c.quarantine(p, err, &l)
			continue
		}
		l.Sandboxes = append(l.Sandboxes, NewSandbox(r.Metadata, r.Status))
	}
	for _, p := range c.list("containers", &l) {
		var r containerRecord
		err := readJSON(p, &r)
		if err == nil {
			r.ContainerMetadata.Config = &runtime.ContainerConfig{}
			if err = protojson.Unmarshal(r.Config, r.ContainerMetadata.Config); err != nil {
				err = fmt.Errorf("decode %q: %w", p, err)
			}
		}
		if err == nil && r.ContainerMetadata.ID+".json" != filepath.Base(p) {
			err = fmt.Errorf("record %q is for container %q", p, r.ContainerMetadata.ID)
		}
		if err != nil {
			c.quarantine(p, err, &l)
			continue
		}
		l.Containers = append(l.Containers, NewContainer(r.ContainerMetadata, r.Status))
	}
	return l
}

// quarantine moves an unreadable record out of the way, keeping its ID known.
func (c *Checkpoint) quarantine(p string, why error, l *Loaded) {
	id := strings.TrimSuffix(filepath.Base(p), ".json")
	l.Quarantined = append(l.Quarantined, id)
	dir := filepath.Join(c.dir, "quarantine")
	dst := filepath.Join(dir, fmt.Sprintf("%s-%s.%d", filepath.Base(filepath.Dir(p)), filepath.Base(p), time.Now().UnixNano()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		l.Errs = append(l.Errs, fmt.Errorf("%w (and quarantine it: %v)", why, err))
		return
	}
	if err := os.Rename(p, dst); err != nil {
		l.Errs = append(l.Errs, fmt.Errorf("%w (and quarantine it: %v)", why, err))
		return
	}
	_ = syncDir(filepath.Dir(p))
	l.Errs = append(l.Errs, fmt.Errorf("%w: moved to %s", why, dst))
}

func (c *Checkpoint) list(kind string, l *Loaded) []string {
	dir := filepath.Join(c.dir, kind)
	ents, err := os.ReadDir(dir)
	if err != nil {
		l.Errs = append(l.Errs, fmt.Errorf("read checkpoint dir %q: %w", dir, err))
		l.Complete = false
		return nil
	}
	var out []string
	for _, e := range ents {
		switch {
		case strings.HasSuffix(e.Name(), ".json"):
			out = append(out, filepath.Join(dir, e.Name()))
		case strings.HasSuffix(e.Name(), ".tmp"):
			_ = os.Remove(filepath.Join(dir, e.Name())) // a write a crash cut short
		}
	}
	return out
}

// writeJSON writes a record atomically and durably: a temp file of its own
// (concurrent writers never share one), fsync, rename over the record,
// fsync of the directory.
func writeJSON(p string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %q: %w", p, err)
	}
	dir := filepath.Dir(p)
	f, err := os.CreateTemp(dir, filepath.Base(p)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %q: %w", p, err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %q: %w", p, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write %q: sync dir: %w", p, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func readJSON(p string, v any) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("read %q: %w", p, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %q: %w", p, err)
	}
	return nil
}

func removeFile(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %q: %w", p, err)
	}
	// No directory sync: a removal a power loss undoes brings back the
	// record of something already gone, which recovery reconciles with
	// the runtime (reported exited or not ready) and the kubelet removes
	// again. Writes, which must not be lost, are synced (writeFile).
	return nil
}
