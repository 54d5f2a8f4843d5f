package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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

// SaveSandbox writes the sandbox's record.
func (c *Checkpoint) SaveSandbox(s *Sandbox) error {
	cfg, err := protojson.Marshal(s.Config)
	if err != nil {
		return fmt.Errorf("encode sandbox %s config: %w", s.ID, err)
	}
	return writeJSON(filepath.Join(c.dir, "sandboxes", s.ID+".json"), sandboxRecord{Metadata: s.Metadata, Status: s.Status(), Config: cfg})
}

// SaveContainer writes the container's record.
func (c *Checkpoint) SaveContainer(ct *Container) error {
	cfg, err := protojson.Marshal(ct.Config)
	if err != nil {
		return fmt.Errorf("encode container %s config: %w", ct.ID, err)
	}
	return writeJSON(filepath.Join(c.dir, "containers", ct.ID+".json"), containerRecord{ContainerMetadata: ct.ContainerMetadata, Status: ct.Status(), Config: cfg})
}

// DeleteSandbox removes the sandbox's record.
func (c *Checkpoint) DeleteSandbox(id string) error {
	return removeFile(filepath.Join(c.dir, "sandboxes", id+".json"))
}

// DeleteContainer removes the container's record.
func (c *Checkpoint) DeleteContainer(id string) error {
	return removeFile(filepath.Join(c.dir, "containers", id+".json"))
}

// Load reads every record. A record that can't be read is reported and skipped.
func (c *Checkpoint) Load() ([]*Sandbox, []*Container, []error) {
	var errs []error
	var sbs []*Sandbox
	var cts []*Container
	for _, p := range list(filepath.Join(c.dir, "sandboxes"), &errs) {
		var r sandboxRecord
		if err := readJSON(p, &r); err != nil {
			errs = append(errs, err)
			continue
		}
		r.Metadata.Config = &runtime.PodSandboxConfig{}
		if err := protojson.Unmarshal(r.Config, r.Metadata.Config); err != nil {
			errs = append(errs, fmt.Errorf("decode %q: %w", p, err))
			continue
		}
		sbs = append(sbs, NewSandbox(r.Metadata, r.Status))
	}
	for _, p := range list(filepath.Join(c.dir, "containers"), &errs) {
		var r containerRecord
		if err := readJSON(p, &r); err != nil {
			errs = append(errs, err)
			continue
		}
		r.ContainerMetadata.Config = &runtime.ContainerConfig{}
		if err := protojson.Unmarshal(r.Config, r.ContainerMetadata.Config); err != nil {
			errs = append(errs, fmt.Errorf("decode %q: %w", p, err))
			continue
		}
		cts = append(cts, NewContainer(r.ContainerMetadata, r.Status))
	}
	return sbs, cts, errs
}

func list(dir string, errs *[]error) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("read checkpoint dir %q: %w", dir, err))
		return nil
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".json") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

func writeJSON(p string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %q: %w", p, err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %q: %w", tmp, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("rename %q: %w", tmp, err)
	}
	return nil
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
	return nil
}
