package containerd

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/containerd/v2/core/sandbox"
)

// A pod's containers share the shim of its pause container. containerd
// finds that shim in one of two ways: by running the shim binary's `start`
// for every container (which answers with the pod's shim, grouped by the
// io.kubernetes.cri.sandbox-id annotation), or, when the container names
// its sandbox (containers.Container.SandboxID) and that sandbox is in
// containerd's sandbox store, by reusing the connection it already has to
// the pause container's shim. The second spares a process start on every
// StartContainer (containerd's own CRI does the same); shims that don't
// speak the sandbox API (shim protocol < 3, e.g. gVisor's) still take the
// first way, which containerd chooses by itself.
//
// The sandbox store record is metadata only (no sandbox controller is
// involved); it carries crimux's labels so the sweep can find one a crash
// left behind.

// createPodGroup records sb's pod in containerd's sandbox store.
func (r *Runtime) createPodGroup(ctx context.Context, id string) error {
	_, err := r.d.client.SandboxStore().Create(r.d.ctx(ctx), sandbox.Sandbox{
		ID:      id,
		Runtime: sandbox.RuntimeOpts{Name: r.opts.RuntimeType},
		Labels:  map[string]string{labelKind: kindSandbox, labelHandler: r.name, labelInstance: r.d.opts.Instance},
	})
	if err != nil {
		return fmt.Errorf("record pod %s in containerd's sandbox store: %w", id, mapErr(err))
	}
	return nil
}

// deletePodGroup removes the sandbox store record of pod id; a missing one
// is not an error.
func (d *Driver) deletePodGroup(ctx context.Context, id string) error {
	if err := d.client.SandboxStore().Delete(d.ctx(ctx), id); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete pod %s from containerd's sandbox store: %w", id, mapErr(err))
	}
	return nil
}

// sweepPodGroups deletes this instance's sandbox store records that no
// crimux record names.
func (d *Driver) sweepPodGroups(ctx context.Context, known func(string) bool) ([]string, error) {
	list, err := d.client.SandboxStore().List(d.ctx(ctx), fmt.Sprintf("labels.%q==%q", labelInstance, d.opts.Instance))
	if err != nil {
		return nil, fmt.Errorf("list containerd's sandbox store: %w", mapErr(err))
	}
	var removed []string
	var errs []error
	for _, s := range list {
		if known(s.ID) {
			continue
		}
		if err := d.deletePodGroup(ctx, s.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "sandbox-store/"+s.ID)
	}
	return removed, errors.Join(errs...)
}
